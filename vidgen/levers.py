"""The runtime's speed levers applied to a loaded transformer: the one place every command shares.

`validate.runtime` checks the levers before anything loads; the pipelines' `load` calls
`apply_runtime` on their transformer once it is loaded and placed, so t2v, i2v, v2v, stream and batch
run it the same way, and `compiling` wraps every generation (it times the compiler and turns its
failures into one-line errors).
"""

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from torch import nn

from vidgen.errors import VidgenError
from vidgen.request import Runtime
from vidgen.validate.runtime import ATTENTION_BACKENDS

# torch.compile's options for `--compile`. Graph breaks are allowed: diffusers' step-cache hooks run
# Python around a block (its own code has none; tests compile it with fullgraph=True). Shapes become
# dynamic on their own once a second size shows up (Helios' history filling), so a full history
# window and jobs of one size compile nothing more.
COMPILE_OPTIONS: dict[str, Any] = {"fullgraph": False}


def apply_runtime(transformer: nn.Module, runtime: Runtime) -> nn.Module:
    """Set `runtime`'s attention backend on `transformer` (any model with diffusers'
    `set_attention_backend`) and, with `--compile`, compile its repeated block; returns it."""
    set_backend = getattr(transformer, "set_attention_backend", None)
    if set_backend is not None:
        set_backend(ATTENTION_BACKENDS[runtime.attention].diffusers)
    if runtime.compile:
        compile_blocks(transformer)
    return transformer


def compile_blocks(transformer: nn.Module, **options: Any) -> None:
    """Regional compile: every repeated block (the model's `_repeated_blocks`) shares one compiled
    graph, so compiling costs one block's time, not the whole model's. Compiles lazily, at first use."""
    transformer.compile_repeated_blocks(**{**COMPILE_OPTIONS, **options})


@contextmanager
def compiling(runtime: Runtime, timings: dict[str, float]) -> Iterator[None]:
    """Around a generation: with `--compile`, the seconds the compiler takes add up in
    timings["compile"], and a compiler failure becomes one line naming `--compile` (exit 2)."""
    if not runtime.compile:
        yield
        return
    from torch._dynamo.callback import callback_handler
    from torch._dynamo.exc import TorchDynamoException

    started: list[float] = []

    def start(*args: Any) -> None:
        started.append(time.perf_counter())

    def end(*args: Any) -> None:
        if started:
            timings["compile"] = timings.get("compile", 0.0) + time.perf_counter() - started.pop()

    callback_handler.register_start_callback(start)
    callback_handler.register_end_callback(end)
    try:
        yield
    except TorchDynamoException as error:
        reason = next((line for line in str(error).splitlines() if line.strip()), type(error).__name__)
        raise VidgenError(
            f"--compile failed: {reason}",
            "run without --compile; on the CPU it needs a working C++ compiler (gcc or clang), "
            "on CUDA GPUs Triton",
        ) from None
    finally:
        callback_handler.remove_start_callback(start)
        callback_handler.remove_end_callback(end)
