"""Carry out a checked plan: fetch the weights, load, generate, write the video and its sidecar."""

import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
import torch

from vidgen.app.summary import summarize
from vidgen.core.errors import OUT_OF_MEMORY, WRITE_FAILED, VidgenError
from vidgen.core.family import Family
from vidgen.core.progress import Progress
from vidgen.core.request import Request, Runtime
from vidgen.families import registry
from vidgen.io.writer import VideoWriter, write_sidecar
from vidgen.runtime.levers import compiling, take_skip_count
from vidgen.runtime.mag_cache import replay_option
from vidgen.runtime.parallel import outcome_speaker
from vidgen.validate.common import Output, Plan
from vidgen.weights.sources import FetchedModel, ModelSource, fetch_model

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
    family = registry.family(plan.preset.family)
    model = fetch(plan.source, timings, cache_dir)
    loaded, runtime = load(family, model, plan.runtime, plan.request, progress, timings)
    return generate(replace(plan, runtime=runtime), model, loaded, progress, timings)


def settle_runtime(runtime: Runtime, model: FetchedModel, request: Request, progress: Progress) -> Runtime:
    """`--offload auto` made concrete for this device and model, told to the user when it is a choice."""
    from vidgen.runtime.memory.auto import settle  # reads safetensors headers: only once the files are here

    settled = settle(runtime, model.folder, request, registry.read_info(model.folder))
    if runtime.offload == "auto":  # on the CPU too: it says why nothing is offloaded there
        progress.note(settled.plan)
    return settled


def fetch(source: ModelSource, timings: dict[str, float], cache_dir: Path | None = None) -> FetchedModel:
    """The model's folder: built (tiny), downloaded (timed as "download") or as given."""
    with _timed(timings, "download") if source.from_hub else nullcontext():
        return fetch_model(source, registry.WEIGHTS, cache_dir)


def load(
    family: Family,
    model: FetchedModel,
    runtime: Runtime,
    request: Request,
    progress: Progress,
    timings: dict[str, float],
) -> tuple[Any, Runtime]:
    """The model's parts loaded, and the runtime they were loaded for: the memory plan settled for
    `request` (a batch passes its largest), the transformer's bytes counted. A batch loads once."""
    from vidgen.runtime.memory.quantize import weight_bytes

    runtime = settle_runtime(runtime, model, request, progress)
    with _stage(progress, "load", timings), _explained_out_of_memory(runtime):
        loaded = family.pipeline().load(model.folder, runtime)
    return loaded, replace(runtime, transformer_bytes=weight_bytes(loaded.transformer))


def with_loras(loaded: Any, runtime: Runtime) -> Any:
    """`loaded` with its transformers holding `runtime.loras` (each expert of a two-expert model those
    for it): one that holds another set is reloaded from its folder and made ready again (a fused LoRA
    cannot be taken out exactly). A batch calls this per job; its jobs come grouped by LoRA set, so
    each set is fused once."""
    from vidgen.runtime.levers import ready_transformer
    from vidgen.runtime.lora import for_expert
    from vidgen.weights import loading

    # part -> expert: "transformer" -> "" for a model of one; Wan 2.2 A14B's names both of its own.
    for part, expert in getattr(loaded, "experts", {"transformer": ""}).items():
        wanted, current = for_expert(runtime.loras, expert), getattr(loaded, part)
        # None when the last set could not be fused (its job failed): the next job loads a fresh copy.
        if current is not None and getattr(current, "vidgen_loras", ()) == wanted:
            continue
        # The class from the folder: after a failed fuse the transformer is gone.
        cls = registry.detect(Path(loaded.folder)).transformer()
        setattr(loaded, part, None)  # freed before the new copy loads
        transformer = loading.load_diffusers_model(cls, loaded.folder, part, runtime.dtype)
        setattr(loaded, part, ready_transformer(transformer, runtime, expert))
    return loaded


def generate(
    plan: Plan,
    model: FetchedModel,
    loaded: Any,
    progress: Progress,
    timings: dict[str, float],
    text_cache: "TextCache | None" = None,
) -> Outcome:
    """Generate the plan's video with a loaded model, write it and its sidecar."""
    with _explained_out_of_memory(plan.runtime), compiling(plan.runtime, timings):
        result = (
            registry.family(plan.preset.family)
            .pipeline()
            .generate(loaded, plan.request, plan.runtime, progress, text_cache=text_cache)
        )
    timings.update(result.timings)
    if not outcome_speaker():  # another torchrun rank: rank 0 decodes and writes the video
        return Outcome({}, plan.output.path, plan.output.sidecar, result.warnings)
    # Every expert's calls (Wan 2.2 A14B: two transformers, each with its own step cache).
    parts = getattr(loaded, "experts", {"transformer": ""})
    skips = take_skip_count(*(getattr(loaded, part, None) for part in parts))
    if skips is not None and "replay_read" in skips:  # the mag cache: what its replay needs
        read, _ = skips.pop("replay_read"), skips.pop("replay_measured")
        plan = with_mag_replay(plan, read, plan.output.path)
    summary = summarize(plan, model, len(result.frames), timings, result.warnings)
    if skips is not None:
        summary["runtime"]["cache"].update(skips)
    with _stage(progress, "write", timings):
        write_video(plan.output, result.frames, plan.request.fps, comment=json.dumps(summary))
    summary["timings"]["write"] = round(timings["write"], 3)
    sidecar = _write_or_explain(lambda: write_sidecar(plan.output.path, summary), plan.output.sidecar)
    return Outcome(summary, plan.output.path, sidecar, result.warnings)


def with_mag_replay(plan: Plan, read: dict[str, list[float]], output: Path | None) -> Plan:
    """The plan as its sidecar's command replays it with --cache mag: `--mag-ratios measure` when the
    run read no stored ratios, else the file beside `output` holding those it read (written here)."""
    if plan.runtime.mag_ratios:  # a preset's ratios: the replay uses them too
        return plan
    return replace(plan, runtime=replace(plan.runtime, mag_source=replay_option(read, output)))


# What the CPU allocator's failure says (c10's DefaultCPUAllocator raises a plain RuntimeError).
CPU_ALLOCATION_FAILURES = (
    "DefaultCPUAllocator: can't allocate memory",
    "DefaultCPUAllocator: not enough memory",
)


@contextmanager
def _explained_out_of_memory(runtime: Runtime) -> Iterator[None]:
    """Running out of memory, on a GPU or the CPU, becomes advice on what uses less."""
    try:
        yield
    except torch.cuda.OutOfMemoryError:  # torch.OutOfMemoryError from torch 2.5 on; same class
        raise out_of_memory(runtime) from None
    except (MemoryError, RuntimeError) as error:
        if not is_cpu_out_of_memory(error):
            raise
        raise out_of_memory(runtime, on_cpu=True) from None


def is_cpu_out_of_memory(error: BaseException) -> bool:
    """Whether `error` is the CPU's allocator failing: Python's MemoryError, or torch's RuntimeError."""
    if isinstance(error, MemoryError):
        return True
    return isinstance(error, RuntimeError) and any(words in str(error) for words in CPU_ALLOCATION_FAILURES)


def out_of_memory(runtime: Runtime, on_cpu: bool = False) -> VidgenError:
    """The error for running out of memory, naming what uses less: the next offload plan for a GPU;
    `on_cpu`: the CPU's memory ran out (offloading moves weights to the CPU, so it cannot help)."""
    from vidgen.runtime.memory.plan import next_plan

    after = None if on_cpu else next_plan(runtime.offload, runtime.quantize)
    tiling = "" if runtime.vae_tiling else "--vae-tiling, "
    return VidgenError(
        f"out of memory on {'the CPU' if on_cpu else runtime.device} (offload {runtime.offload}, "
        f"quantize {runtime.quantize}, vae tiling {'on' if runtime.vae_tiling else 'off'})",
        f"use less memory: {f'try {after}, ' if after else ''}{tiling}or a smaller --height/--width/--frames",
        exit_code=OUT_OF_MEMORY,
    )


def write_video(output: Output, frames: np.ndarray, fps: int, comment: str | None = None) -> None:
    """Write all frames at once; nothing is left under the output's name if writing fails."""

    def write() -> None:
        with VideoWriter.open(output.path, fps, output.format, comment, replace=output.overwrite) as writer:
            writer.write(frames)

    _write_or_explain(write, output.path)


def _write_or_explain(write: Callable[[], T], path: Path) -> T:
    """Run `write`; a failing disk (full, removed, read-only) or encoder becomes one line naming the file
    (and nothing under its name)."""
    try:
        return write()
    except FileExistsError:  # checked before generating, but another run finished first
        raise VidgenError(
            f"'{path}' already exists: another run wrote it while this one generated; it was left as it is",
            "pass --overwrite to replace it, or choose another name with -o",
            exit_code=WRITE_FAILED,
        ) from None
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
