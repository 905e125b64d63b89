"""Decoding chunk k while chunk k+1 denoises: a second CUDA stream, and the order chunks come out in.

`in_order` is the whole scheduling policy, with no CUDA in it (tests drive it with stand-ins): each
chunk's decode is started as soon as its latents are final; a decode that runs in flight is finished,
and its frames handed on, only after the next chunk's denoising has been queued, so the GPU decodes
one chunk beside the next one's denoising, and the host writes a chunk while the GPU works on the
next. One decode is in flight at a time and one chunk waits, so memory does not grow with the video.
Chunks come out in order, and a decode's error comes out where its chunk would have. When generation
stops (Ctrl-C, a failure, the end of --live input), the chunk still waiting is finished and handed on
first: a chunk whose latents were final stays in the output, as it would have without the overlap.

`SideStream` is the CUDA half: work queued on a second stream behind what the main stream has queued.
"""

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Generic, TypeVar

import torch

Item = TypeVar("Item")
Frames = TypeVar("Frames")


@dataclass(frozen=True)
class Decoding(Generic[Frames]):
    """A started decode: `finish()` waits for it and gives its frames. `in_flight`: it runs beside
    what comes next (False: done already, its frames are handed on at once)."""

    finish: Callable[[], Frames]
    in_flight: bool = False


def in_order(items: Iterable[Item], start: Callable[[Item], Decoding[Frames]]) -> Iterator[Frames]:
    """The frames of each of `items` (a chunk's final latents), in order: `start(item)` begins its
    decode; one in flight is finished after the next item exists (or generation stops)."""
    waiting: Decoding[Frames] | None = None
    try:
        for item in items:  # pulling the next item queues the next chunk's denoising
            if waiting is not None:  # one decode in flight: the one before ends before the next starts
                finishing, waiting = waiting, None
                waiting = _done(finishing.finish())
            started = start(item)
            if waiting is not None:
                handed, waiting = waiting, None
                yield handed.finish()
            if started.in_flight:
                waiting = started
            else:
                yield started.finish()
    except GeneratorExit:  # the consumer stopped: nothing can be handed on any more
        raise
    except BaseException:
        if waiting is not None:  # generation stopped after this chunk's latents were final: keep it
            yield waiting.finish()
        raise
    if waiting is not None:
        yield waiting.finish()


def _done(frames: Frames) -> Decoding[Frames]:
    return Decoding(lambda: frames)


class SideStream:
    """A second CUDA stream for decoding beside the denoising on the main (current) stream. `cuda` is
    `torch.cuda`, or a stand-in that records the calls (tests on a machine without a GPU)."""

    def __init__(self, device: torch.device | str, cuda=torch.cuda) -> None:
        self.device, self.cuda = torch.device(device), cuda
        self.stream = cuda.Stream(self.device)

    def run(self, work: Callable[[], torch.Tensor], *shared: torch.Tensor) -> Callable[[], torch.Tensor]:
        """Queue `work` on the side stream behind everything queued so far on the main stream (which
        made `shared`, the tensors it reads); returns a function that waits for the result and gives
        it in host memory. Nothing here waits for the GPU: the host goes on to queue the next chunk."""
        ready = self.cuda.Event()
        ready.record(self.cuda.current_stream(self.device))  # the chunk's latents are final here
        self.stream.wait_event(ready)
        for tensor in shared:
            # Freed by the main stream while the side stream may still read it: the caching allocator
            # must not hand its memory to the next chunk before the decode is done with it.
            tensor.record_stream(self.stream)
        with self.cuda.stream(self.stream):
            host = work().to("cpu", non_blocking=True)  # pinned memory, filled when the work is done
            done = self.cuda.Event()
            done.record(self.stream)

        def finish() -> torch.Tensor:
            done.synchronize()  # an error in the decode surfaces here, in its chunk's place
            return host

        return finish

    def has_room(self) -> bool:
        """Whether the device can hold a decode beside a denoise: the memory the caching allocator
        keeps for the largest stage so far (a decode's and a denoise's working memory, after the first
        chunk) fits in what is free again. The offload planner sized the card for one stage at a time;
        the side stream's allocations cannot reuse the main stream's cached blocks."""
        free, _ = self.cuda.mem_get_info(self.device)
        cached = self.cuda.memory_reserved(self.device) - self.cuda.memory_allocated(self.device)
        return free >= cached
