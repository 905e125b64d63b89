"""Carry out a checked plan: fetch the weights, load, generate, write the video and its sidecar."""

import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
import torch

from vidgen.errors import OUT_OF_MEMORY, WRITE_FAILED, VidgenError
from vidgen.io.writer import VideoWriter, write_sidecar
from vidgen.progress import Progress
from vidgen.request import Runtime
from vidgen.sources import FetchedModel, ModelSource, fetch_model
from vidgen.summary import summarize
from vidgen.validate import Output, Plan

if TYPE_CHECKING:  # transformers, which the text stage imports, takes seconds to import
    from vidgen.stages.text import TextCache

T = TypeVar("T")


@dataclass(frozen=True)
class Outcome:
    summary: dict[str, Any]
    output: Path
    sidecar: Path
    warnings: list[str]


def run(plan: Plan, progress: Progress, cache_dir: Path | None = None) -> Outcome:
    timings: dict[str, float] = {}
    model = fetch(plan.source, timings, cache_dir)
    loaded = load(plan.preset.family, model, plan.runtime, progress, timings)
    return generate(plan, model, loaded, progress, timings)


def fetch(source: ModelSource, timings: dict[str, float], cache_dir: Path | None = None) -> FetchedModel:
    """The model's folder: built (tiny), downloaded (timed as "download") or as given."""
    with _timed(timings, "download") if source.from_hub else nullcontext():
        return fetch_model(source, cache_dir)


def load(
    family: str, model: FetchedModel, runtime: Runtime, progress: Progress, timings: dict[str, float]
) -> Any:
    """The model's parts, loaded for `runtime`; a batch loads once and generates many times."""
    with _stage(progress, "load", timings), _explained_out_of_memory(runtime):
        return pipeline(family).load(model.folder, runtime)


def generate(
    plan: Plan,
    model: FetchedModel,
    loaded: Any,
    progress: Progress,
    timings: dict[str, float],
    text_cache: "TextCache | None" = None,
) -> Outcome:
    """Generate the plan's video with a loaded model, write it and its sidecar."""
    with _explained_out_of_memory(plan.runtime):
        result = pipeline(plan.preset.family).generate(
            loaded, plan.request, plan.runtime, progress, text_cache=text_cache
        )
    timings.update(result.timings)
    summary = summarize(plan, model, len(result.frames), timings, result.warnings)
    with _stage(progress, "write", timings):
        write_video(plan.output, result.frames, plan.request.fps, comment=json.dumps(summary))
    summary["timings"]["write"] = round(timings["write"], 3)
    sidecar = _write_or_explain(lambda: write_sidecar(plan.output.path, summary), plan.output.sidecar)
    return Outcome(summary, plan.output.path, sidecar, result.warnings)


def pipeline(family: str) -> ModuleType:
    """The pipeline module of a model family: the one place a family picks its code."""
    # Imported here: diffusers and the model code take seconds to import, and every check (and
    # `vidgen --help`) runs without them.
    from vidgen.pipelines import cogvideox, helios_video

    pipelines = {"cogvideox": cogvideox, "helios": helios_video}
    return pipelines[family]


@contextmanager
def _explained_out_of_memory(runtime: Runtime) -> Iterator[None]:
    """Running out of device memory becomes advice on what uses less."""
    try:
        yield
    except torch.cuda.OutOfMemoryError:  # torch.OutOfMemoryError from torch 2.5 on; same class
        raise out_of_memory(runtime) from None


def out_of_memory(runtime: Runtime) -> VidgenError:
    return VidgenError(
        f"out of memory on {runtime.device} (offload {runtime.offload}, "
        f"vae tiling {'on' if runtime.vae_tiling else 'off'})",
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
    """Run `write`; a failing disk (full, removed, read-only) or encoder becomes one line naming the file
    (and nothing under its name)."""
    try:
        return write()
    except OSError as error:
        raise VidgenError(
            f"writing '{path}' failed: {error.strerror or error}",
            "free some space or choose another -o",
            exit_code=WRITE_FAILED,
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
