"""A pipeline stage as the progress display and the sidecar's timings see it."""

import time
from collections.abc import Iterator
from contextlib import contextmanager

import torch

from vidgen.core.progress import Progress
from vidgen.core.request import Result, Runtime


@contextmanager
def timed_stage(
    name: str,
    progress: Progress,
    result: Result,
    runtime: Runtime,
    total: int | None = None,
) -> Iterator[None]:
    """Reports the stage to `progress` and records its wall time in `result.timings`."""
    progress.start_stage(name, total)
    start = time.perf_counter()
    yield
    if torch.device(runtime.device).type == "cuda":
        torch.cuda.synchronize()  # CUDA runs ahead of Python: wait, or the time lands in the next stage
    result.timings[name] = time.perf_counter() - start
    progress.end_stage()
