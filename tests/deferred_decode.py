"""A stand-in for the CUDA side stream (vidgen.stages.decode_ahead.SideStream), for CPU tests of the
overlapped decode: each decode runs only when its frames are asked for, as late as a real side stream
could finish it, so a chunk's latents that changed meanwhile would show in its frames."""

from collections.abc import Callable

import torch


class DeferredSideStream:
    def __init__(self, fail_at: int | None = None) -> None:
        self.fail_at = fail_at  # the decode that raises, counting from 0
        self.started = 0  # decodes run on the "side stream"
        self.most_waiting = 0  # decodes started and not yet finished, at most
        self.waiting = 0

    def run(self, work: Callable[[], torch.Tensor], *shared: torch.Tensor) -> Callable[[], torch.Tensor]:
        number = self.started
        self.started += 1
        self.waiting += 1
        self.most_waiting = max(self.most_waiting, self.waiting)

        def finish() -> torch.Tensor:
            self.waiting -= 1
            if number == self.fail_at:
                raise RuntimeError(f"decode {number} failed on the side stream")
            return work()

        return finish

    def has_room(self) -> bool:
        return True
