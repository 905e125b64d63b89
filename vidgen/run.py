"""Carry out a checked plan: fetch the weights, load, generate, write the video and its sidecar."""

import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch

from vidgen.errors import OUT_OF_MEMORY, VidgenError
from vidgen.io.writer import VideoWriter, write_sidecar
from vidgen.progress import Progress
from vidgen.request import Result
from vidgen.sources import FetchedModel, fetch_model
from vidgen.summary import summarize
from vidgen.validate import Output, Plan

T = TypeVar("T")


@dataclass(frozen=True)
class Outcome:
    summary: dict[str, Any]
    output: Path
    sidecar: Path
    warnings: list[str]


def run(plan: Plan, progress: Progress, cache_dir: Path | None = None) -> Outcome:
    timings: dict[str, float] = {}
    with _timed(timings, "download") if plan.source.from_hub else nullcontext():
        model = fetch_model(plan.source, cache_dir)
    result = _generate(plan, model, progress, timings)
    timings.update(result.timings)
    summary = summarize(plan, model, len(result.frames), timings, result.warnings)
    with _stage(progress, "write", timings):
        write_video(plan.output, result.frames, plan.request.fps, comment=json.dumps(summary))
    summary["timings"]["write"] = round(timings["write"], 3)
    sidecar = _write_or_explain(lambda: write_sidecar(plan.output.path, summary), plan.output.sidecar)
    return Outcome(summary, plan.output.path, sidecar, result.warnings)


def _generate(plan: Plan, model: FetchedModel, progress: Progress, timings: dict[str, float]) -> Result:
    """Load and generate; running out of device memory becomes advice on what uses less."""
    # Imported here: diffusers and the model code take seconds to import, and every check (and
    # `vidgen --help`) runs without them.
    from vidgen.pipelines import cogvideox

    try:
        with _stage(progress, "load", timings):
            loaded = cogvideox.load(model.folder, plan.runtime)
        return cogvideox.generate(loaded, plan.request, plan.runtime, progress)
    except torch.cuda.OutOfMemoryError:  # torch.OutOfMemoryError from torch 2.5 on; same class
        raise out_of_memory(plan) from None


def out_of_memory(plan: Plan) -> VidgenError:
    return VidgenError(
        f"out of memory on {plan.runtime.device} (offload {plan.runtime.offload}, "
        f"vae tiling {'on' if plan.runtime.vae_tiling else 'off'})",
        "use less memory: --offload model (or --offload sequential, slower), --vae-tiling, "
        "or a smaller --height/--width/--frames",
        exit_code=OUT_OF_MEMORY,
    )


def write_video(output: Output, frames: np.ndarray, fps: int, comment: str | None = None) -> None:
    """Write all frames at once; nothing is left under the output's name if writing fails."""

    def write() -> None:
        with VideoWriter.open(output.path, fps, output.format, comment=comment) as writer:
            writer.write(frames)

    _write_or_explain(write, output.path)


def _write_or_explain(write: Callable[[], T], path: Path) -> T:
    """Run `write`; a failing disk (full, removed, read-only) becomes one line naming the file."""
    try:
        return write()
    except OSError as error:
        raise VidgenError(
            f"writing '{path}' failed: {error.strerror or error}", "free some space or choose another -o"
        ) from None


@contextmanager
def _timed(timings: dict[str, float], name: str) -> Iterator[None]:
    start = time.perf_counter()
    yield
    timings[name] = time.perf_counter() - start


@contextmanager
def _stage(progress: Progress, name: str, timings: dict[str, float]) -> Iterator[None]:
    progress.start_stage(name)
    with _timed(timings, name):
        yield
    progress.end_stage()
