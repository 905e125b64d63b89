"""The runtime's speed levers applied to a loaded transformer: the one place every command shares.

`validate.runtime` checks the levers before anything loads; the pipelines' `load` calls
`ready_transformer` on their transformer once it is loaded, so t2v, i2v, v2v, stream and batch
run it the same way, and `compiling` wraps every generation (it times the compiler and turns its
failures into one-line errors).
"""

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from vidgen.core.errors import VidgenError
from vidgen.core.progress import Progress
from vidgen.core.request import Runtime
from vidgen.runtime.attention import ATTENTION_BACKENDS
from vidgen.runtime.lora import for_expert, fuse_loras
from vidgen.runtime.mag_cache import (
    MEASURE,
    NEVER_ENDS,
    MagSession,
    RatioStore,
    read_ratios,
    store_path,
    weights_fingerprint,
)
from vidgen.runtime.memory.quantize import quantize
from vidgen.runtime.parallel import parallelize
from vidgen.weights.loading import place

# torch.compile's options for `--compile`. Graph breaks are allowed: diffusers' step-cache hooks run
# Python around a block (its own code has none; tests compile it with fullgraph=True). Shapes become
# dynamic on their own once a second size shows up (Helios' history filling), so a full history
# window and jobs of one size compile nothing more.
COMPILE_OPTIONS: dict[str, Any] = {"fullgraph": False}


def ready_transformer(transformer: nn.Module, runtime: Runtime, expert: str = "") -> nn.Module:
    """A just-loaded transformer made ready as `runtime` says, in the one order that works: quantized
    on the CPU (so offload hooks stream the smaller weights), placed by the offload plan, then its
    attention backend, step cache and compile. LoRAs are fused first: into the weights as loaded, so
    quantizing and offloading see the fused weights; `expert` (of a two-expert model: "high", "low")
    takes those named for it too."""
    fuse_loras(transformer, for_expert(runtime.loras, expert))
    # The mag cache's stored ratios belong to these weights: read them before offloading hides them.
    weights = weights_fingerprint(transformer) if runtime.cache == "mag" else None
    quantize(transformer, runtime.quantize, runtime.dtype)
    return apply_runtime(place(transformer, runtime), runtime, weights)


def apply_runtime(transformer: nn.Module, runtime: Runtime, weights: str | None = None) -> nn.Module:
    """Set `runtime`'s attention backend on `transformer` (any model with diffusers'
    `set_attention_backend`), its step cache, and with `--compile` compile its repeated block;
    returns it. `weights`: the transformer's `weights_fingerprint`, for the mag cache (else read here)."""
    set_backend = getattr(transformer, "set_attention_backend", None)
    if set_backend is not None:
        set_backend(ATTENTION_BACKENDS[runtime.attention].diffusers)
    if runtime.cache != "none":
        enable_step_cache(
            transformer,
            runtime.cache,
            runtime.cache_threshold,
            runtime.mag_ratios,
            weights,
            runtime.mag_source,
        )
    if runtime.compile:
        compile_blocks(transformer)
    return parallelize(transformer, runtime.parallel, runtime.device)  # after the backend: it wraps it


def compile_blocks(transformer: nn.Module, **options: Any) -> None:
    """Regional compile: every repeated block (the model's `_repeated_blocks`) shares one compiled
    graph, so compiling costs one block's time, not the whole model's. Compiles lazily, at first use."""
    transformer.compile_repeated_blocks(**{**COMPILE_OPTIONS, **options})
    transformer.compile_pending = True  # the first denoising step will compile: `compile_stage` shows it


def compile_stage(progress: Progress, *transformers: nn.Module | None) -> Progress:
    """`progress` for a generation; when a transformer was just compiled, one that reports the first
    denoising step (where the compiler runs) as a "compile" stage of its own. A model of two experts
    passes both: the second's blocks share the first's compiled graph (the compiler's own timing,
    `compiling`, counts any it compiles), and neither is shown as compiling again. The mag caches'
    notes (ratios being measured) go to it from here on."""
    pending = False
    for transformer in transformers:
        session = getattr(transformer, "mag_cache", None)
        if session is not None:
            session.attach(progress.note)
        if getattr(transformer, "compile_pending", False):
            transformer.compile_pending, pending = False, True
    return _FirstStepCompiles(progress) if pending else progress


class _FirstStepCompiles:
    """Progress whose first stage with steps begins as "compile" until its first step is done."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.waiting = True  # for the first stage with steps
        self.deferred: tuple[str, int] | None = None  # that stage, shown once its first step is done

    def note(self, line: str) -> None:
        self.progress.note(line)

    def start_stage(self, name: str, total: int | None = None) -> None:
        if self.waiting and total:
            self.waiting, self.deferred = False, (name, total)
            self.progress.start_stage("compile")
        else:
            self.progress.start_stage(name, total)

    def advance(self, steps: int = 1) -> None:
        if self.deferred is None:
            self.progress.advance(steps)
            return
        name, total = self.deferred
        self.deferred = None
        self.progress.end_stage()
        self.progress.start_stage(name, total - 1)
        if steps > 1:
            self.progress.advance(steps - 1)

    def end_stage(self) -> None:
        self.deferred = None
        self.progress.end_stage()

    def __getattr__(self, name: str) -> Any:  # stream progress' chunk_written and the like
        return getattr(self.progress, name)


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


# ---------------------------------------------------------------------------------------------------
# Step caching (diffusers' hooks)
# ---------------------------------------------------------------------------------------------------


@dataclass
class SkipCounter:
    """Transformer calls, and how many of them ran the cached part in full (the rest were skipped)."""

    calls: int = 0
    computed: int = 0

    @property
    def skipped(self) -> int:
        return self.calls - self.computed


def enable_step_cache(
    transformer: nn.Module,
    mode: str,
    threshold: float | None = None,
    mag_ratios: tuple[float, ...] = (),
    weights: str | None = None,
    mag_source: str | None = None,
) -> SkipCounter:
    """Turn on diffusers' step cache `mode` ("first-block", "mag" or "taylorseer") on `transformer`.

    Its calls are counted from here on: `transformer.step_cache_skips` (read by `take_skip_count`).
    "mag" skips with `mag_ratios` when given, else with the ratios stored for the weights' fingerprint
    `weights` (read from the transformer when None), measuring those it lacks (`vidgen.runtime.mag_cache`);
    `mag_source` (--mag-ratios): "measure" or a ratios file, instead of that shared store.
    """
    from diffusers.hooks import FirstBlockCacheConfig, MagCacheConfig, TaylorSeerCacheConfig

    blocks = _repeated_blocks(transformer)
    counter = SkipCounter()
    # The last block runs only when the cache decides to compute: its calls are the computed ones.
    probe = blocks[-1]
    if mode == "first-block":
        config = FirstBlockCacheConfig() if threshold is None else FirstBlockCacheConfig(threshold=threshold)
    elif mode == "mag":
        # Calibrating until `MagSession.begin` knows the loop's schedule. Threshold 0 never skips: the
        # accumulated error can be exactly 0 (a ratio of 1.0), which diffusers' `<=` would skip on.
        config = MagCacheConfig(calibrate=True, num_inference_steps=NEVER_ENDS)
        if threshold is not None:
            config.threshold = threshold
            config.max_skip_steps = config.max_skip_steps if threshold > 0 else 0
    elif mode == "taylorseer":
        # TaylorSeer predicts the attention layers' outputs on skipped steps. Named here: diffusers'
        # default patterns match layers called "attn" only, not attn1/attn2.
        probe = blocks[-1].attn1
        config = TaylorSeerCacheConfig(cache_identifiers=[r"^(transformer_blocks|blocks)\.\d+\.attn\d$"])
    else:
        raise ValueError(f"unknown step cache {mode!r}")
    _count_calls(probe, counter, "computed")
    transformer.register_forward_pre_hook(lambda module, args: _add(counter, "calls"))
    transformer.enable_cache(config)  # the hooks wrap the probe's counting forward
    transformer.step_cache_skips = counter
    if mode == "mag":
        transformer.mag_cache = _mag_session(transformer, blocks[0], config, mag_ratios, weights, mag_source)
    return counter


def _mag_session(
    transformer: nn.Module,
    head: nn.Module,
    config: Any,
    given: tuple[float, ...],
    weights: str | None,
    source: str | None = None,
) -> MagSession:
    from diffusers.hooks import HookRegistry
    from diffusers.hooks.mag_cache import _MAG_CACHE_LEADER_BLOCK_HOOK

    # The head block's hook holds the state of each guidance context, with the ratios it measured.
    hook = HookRegistry.check_if_exists_or_initialize(head).get_hook(_MAG_CACHE_LEADER_BLOCK_HOOK)
    manager = hook.state_manager
    if source == MEASURE:
        store, problem = RatioStore(None, shared=False), None
    elif source is not None:  # a file checked with the options
        store, problem = RatioStore(Path(source), read_ratios(Path(source))[0], shared=False), None
    else:
        path = store_path(weights or weights_fingerprint(transformer))
        ratios, problem = read_ratios(path)
        store = RatioStore(path, ratios)
    session = MagSession(config, lambda: manager._state_cache, store, given, problem)
    transformer.register_forward_hook(lambda module, args, output: session.after_call())
    return session


def step_cache_context(transformer: nn.Module, name: str) -> AbstractContextManager:
    """diffusers' cache context for one denoising call ("cond", "uncond", "cond_uncond"): each name
    keeps its own cache state. A no-op for a transformer without a step cache."""
    if getattr(transformer, "is_cache_enabled", False):
        return transformer.cache_context(name)
    return nullcontext()


def reset_step_cache(transformer: nn.Module, timesteps: Sequence[float] | torch.Tensor | None = None) -> None:
    """Forget what the step cache holds: before a new video, before each Helios chunk (whose latents
    and history start over), and at the start of each denoising loop, which passes its `timesteps`
    (the mag cache picks its ratios by them)."""
    if getattr(transformer, "is_cache_enabled", False):
        transformer._reset_stateful_cache()
    session = getattr(transformer, "mag_cache", None)
    if session is not None and timesteps is not None:
        session.begin(timesteps)


def take_skip_count(*transformers: nn.Module | None) -> dict[str, Any] | None:
    """{"calls": n, "skipped": k} since the last time asked (the mag cache adds where its ratios came
    from); None without a step cache. A model of two experts passes both: their counts add up, and the
    mag cache's ratios come from each expert's own file, its stretch of steps under its own keys."""
    counts = [count for transformer in transformers if (count := _take_one(transformer)) is not None]
    if len(counts) < 2:
        return counts[0] if counts else None
    total: dict[str, Any] = {
        "calls": sum(count["calls"] for count in counts),
        "skipped": sum(count["skipped"] for count in counts),
    }
    if "ratios" in counts[0]:
        sources = [count["ratios"] for count in counts]
        total["ratios"] = "measured" if "measured" in sources else sources[0]
        files = list(dict.fromkeys(count["ratios_file"] for count in counts))
        total["ratios_file"] = files[0] if len(files) == 1 else files
        total["replay_read"] = {key: r for count in counts for key, r in count["replay_read"].items()}
        total["replay_measured"] = set().union(*(count["replay_measured"] for count in counts))
    return total


def _take_one(transformer: nn.Module | None) -> dict[str, Any] | None:
    counter = getattr(transformer, "step_cache_skips", None)
    if counter is None:
        return None
    counts: dict[str, Any] = {"calls": counter.calls, "skipped": counter.skipped}
    counter.calls = counter.computed = 0
    session = getattr(transformer, "mag_cache", None)
    if session is not None:
        counts.update(session.take())
    return counts


def _add(counter: SkipCounter, name: str) -> None:
    setattr(counter, name, getattr(counter, name) + 1)


def _count_calls(module: nn.Module, counter: SkipCounter, name: str) -> None:
    forward: Callable = module.forward

    def counted(*args: Any, **kwargs: Any) -> Any:
        _add(counter, name)
        return forward(*args, **kwargs)

    module.forward = counted


def _repeated_blocks(transformer: nn.Module) -> list[nn.Module]:
    names = getattr(transformer, "_repeated_blocks", ())
    return [m for m in transformer.modules() if type(m).__name__ in names]
