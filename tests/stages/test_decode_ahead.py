"""The overlapped decode's scheduling (vidgen.stages.decode_ahead.in_order) with stand-in chunks and
decodes that log what happens when: the order of denoising, decoding and writing, one decode in
flight, the last chunk flushed, a stop after a chunk's latents are final keeping that chunk, and a
decode's error coming out in its chunk's place. Then the CUDA half (SideStream) against a stand-in for
torch.cuda that logs the calls, in the order the GPU would see them."""

from contextlib import contextmanager
from types import SimpleNamespace

import pytest

from vidgen.stages.decode_ahead import Decoding, SideStream, in_order


class Log:
    def __init__(self, chunks: int, in_flight: bool, stop_at: int | None = None, stop=KeyboardInterrupt):
        self.events: list[str] = []
        self.chunks, self.in_flight, self.stop_at, self.stop = chunks, in_flight, stop_at, stop
        self.failing_finish: int | None = None
        self.failing_start: int | None = None

    def denoised(self):
        for chunk in range(self.chunks):
            if chunk == self.stop_at:
                raise self.stop("stopped")
            self.events.append(f"denoise {chunk}")
            yield chunk

    def start(self, chunk: int) -> Decoding[str]:
        if chunk == self.failing_start:
            raise RuntimeError(f"start {chunk} failed")
        self.events.append(f"start {chunk}")

        def finish() -> str:
            if chunk == self.failing_finish:
                raise RuntimeError(f"decode {chunk} failed")
            self.events.append(f"finish {chunk}")
            return f"frames {chunk}"

        return Decoding(finish, in_flight=self.in_flight)

    def write_all(self) -> list[str]:
        written = []
        for frames in in_order(self.denoised(), self.start):
            self.events.append(f"write {frames.split()[1]}")
            written.append(frames)
        return written


def test_in_flight_decodes_are_written_after_the_next_chunk_is_queued_and_in_order():
    log = Log(chunks=3, in_flight=True)
    assert log.write_all() == ["frames 0", "frames 1", "frames 2"]
    assert log.events == [
        "denoise 0", "start 0",
        "denoise 1", "finish 0", "start 1", "write 0",
        "denoise 2", "finish 1", "start 2", "write 1",
        "finish 2", "write 2",  # the last chunk is flushed once generation ends
    ]  # fmt: skip


def test_one_decode_is_in_flight_at_a_time():
    log = Log(chunks=5, in_flight=True)
    log.write_all()
    in_flight, most = 0, 0
    for event in log.events:
        in_flight += event.startswith("start") - event.startswith("finish")
        most = max(most, in_flight)
    assert most == 1 and in_flight == 0


def test_decodes_done_at_once_are_written_in_turn_as_without_the_overlap():
    log = Log(chunks=2, in_flight=False)
    assert log.write_all() == ["frames 0", "frames 1"]
    assert log.events == [
        "denoise 0", "start 0", "finish 0", "write 0",
        "denoise 1", "start 1", "finish 1", "write 1",
    ]  # fmt: skip


@pytest.mark.parametrize("stop", [KeyboardInterrupt, RuntimeError, MemoryError])
def test_a_stop_while_the_next_chunk_denoises_still_writes_the_finished_chunk(stop):
    log = Log(chunks=4, in_flight=True, stop_at=2, stop=stop)
    written = []
    with pytest.raises(stop, match="stopped"):
        for frames in in_order(log.denoised(), log.start):
            written.append(frames)
    assert written == ["frames 0", "frames 1"]  # as many as the synchronous path would have written


@pytest.mark.parametrize(
    ("failing", "chunk", "error", "before"),
    [
        # A failed decode surfaces in its chunk's place, and nothing after it is written.
        ("failing_finish", 1, "decode 1 failed", ["frames 0"]),
        # A decode that fails to start comes after the chunk waiting before it.
        ("failing_start", 2, "start 2 failed", ["frames 0", "frames 1"]),
    ],
)
def test_a_failing_decode_ends_the_chunks_after_those_before_it(failing, chunk, error, before):
    log = Log(chunks=4, in_flight=True)
    setattr(log, failing, chunk)
    written = []
    with pytest.raises(RuntimeError, match=error):
        for frames in in_order(log.denoised(), log.start):
            written.append(frames)
    assert written == before


def test_a_consumer_that_stops_early_closes_the_chunks_without_finishing_more():
    log = Log(chunks=4, in_flight=True)
    chunks = in_order(log.denoised(), log.start)
    assert next(chunks) == "frames 0"
    chunks.close()
    assert log.events[-2:] == ["finish 0", "start 1"]  # chunk 1 started, then abandoned


class CudaLog:
    """Stands in for torch.cuda: streams, events and tensors that log what is asked of them."""

    def __init__(self, free: int = 0, reserved: int = 0, allocated: int = 0) -> None:
        self.log: list[tuple] = []
        self.current = "main"
        self.events = 0
        self.memory = (free, reserved, allocated)
        log = self

        class Stream:
            def __init__(self, device, name: str = "side"):
                self.name = name

            def wait_event(self, event):
                log.log.append(("wait", self.name, event.name))

        class Event:
            def __init__(self):
                log.events += 1
                self.name = f"event {log.events}"

            def record(self, stream=None):
                log.log.append(("record", self.name, stream.name if stream else log.current))

            def synchronize(self):
                log.log.append(("synchronize", self.name))

        self.Stream, self.Event = Stream, Event
        self.current_stream = lambda device: Stream(device, "main")
        self.mem_get_info = lambda device: (self.memory[0], 1 << 40)
        self.memory_reserved = lambda device: self.memory[1]
        self.memory_allocated = lambda device: self.memory[2]

    @contextmanager
    def stream(self, stream):
        before, self.current = self.current, stream.name
        yield
        self.current = before

    def tensor(self, name: str) -> SimpleNamespace:
        def to(device, non_blocking=False):
            self.log.append(("copy", name, device, non_blocking, self.current))
            return f"{name} on the host"

        def record_stream(stream):
            self.log.append(("record_stream", name, stream.name))

        return SimpleNamespace(to=to, record_stream=record_stream)


def test_the_side_stream_decodes_after_the_latents_are_final_and_waits_only_when_asked():
    cuda = CudaLog()
    side = SideStream("cuda", cuda=cuda)
    latents, pixels = cuda.tensor("latents"), cuda.tensor("pixels")

    def decode():
        cuda.log.append(("decode", cuda.current))
        return pixels

    finish = side.run(decode, latents)
    assert cuda.log == [
        ("record", "event 1", "main"),  # after everything the main stream has queued (the latents)
        ("wait", "side", "event 1"),
        ("record_stream", "latents", "side"),  # not reused by the next chunk before the decode reads it
        ("decode", "side"),
        ("copy", "pixels", "cpu", True, "side"),  # into pinned memory, without waiting
        ("record", "event 2", "side"),
    ]
    assert finish() == "pixels on the host"
    assert cuda.log[-1] == ("synchronize", "event 2")  # the host waits for the decode only now


@pytest.mark.parametrize(("free", "room"), [(5, True), (4, False)])
def test_a_decode_beside_a_denoise_needs_what_the_allocator_keeps_free_again(free, room):
    cuda = CudaLog(free=free, reserved=9, allocated=4)  # 5 cached for the largest stage
    assert SideStream("cuda", cuda=cuda).has_room() is room
