"""How a command runs, apart from what it generates: device, precision, offload, VAE tiling and the
speed levers (attention backend, compile, step cache).

Every runtime lever lives here, checked once for every command (t2v, i2v, v2v, stream, batch), so a
new lever is one function here and one Runtime field, not a branch in each command; `vidgen.runtime.levers`
applies them to the loaded models.
"""

from dataclasses import replace
from functools import partial
from pathlib import Path

import torch

from vidgen.core.choices import CACHE_MODES, OFFLOADS
from vidgen.core.errors import VidgenError
from vidgen.core.family import Family
from vidgen.core.model_info import ModelInfo
from vidgen.core.request import DTYPES, Lora, ParallelPlan, Request, Runtime, dtype_name
from vidgen.runtime.attention import ATTENTION_BACKENDS, attention_problems, resolve_attention
from vidgen.runtime.memory.quantize import check_quantize
from vidgen.runtime.ranks import Rank
from vidgen.validate.common import InputReader, Model, Options
from vidgen.weights.presets import Preset

DEVICE_KINDS = ("cpu", "cuda", "mps")


def resolve_device(device: str | None) -> str:
    """The device to run on: as given (and available), else CUDA when there is one, else the CPU."""
    if device is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        kind = torch.device(device).type
    except RuntimeError:
        raise VidgenError(f"unknown device '{device}'", "use cpu, cuda or cuda:N") from None
    if kind not in DEVICE_KINDS:  # torch knows more (meta holds no data; others vidgen never ran on)
        raise VidgenError(f"vidgen cannot run on device '{device}'", "use cpu, cuda or cuda:N")
    if kind == "cuda" and not torch.cuda.is_available():
        raise VidgenError("CUDA is not available on this machine", "pass --device cpu")
    if kind == "cuda" and (torch.device(device).index or 0) >= torch.cuda.device_count():
        raise VidgenError(f"no device {device}", f"this machine has {torch.cuda.device_count()} CUDA devices")
    if kind == "mps" and not torch.backends.mps.is_available():
        raise VidgenError("MPS is not available on this machine", "pass --device cpu")
    return device


def build_runtime(options: Options, preset: Preset, device: str, notes: list[str]) -> Runtime:
    dtype = options.dtype or preset.dtype
    if options.dtype is None and dtype == "fp16" and torch.device(device).type == "cpu":
        # fp16 matmuls on the CPU are slow and overflow where CUDA's do not.
        notes.append(f"running in fp32 on the CPU instead of {preset.name}'s fp16 (--dtype fp16 forces it)")
        dtype = "fp32"
    offload, quantize = options.offload or preset.offload, options.quantize or preset.quantize
    check_memory_options(offload, quantize, device)
    cache = check_cache(options.cache or preset.cache)
    source = check_mag_source(getattr(options, "mag_ratios", None), cache)
    return Runtime(
        device=device,
        dtype=DTYPES[dtype],
        offload=offload,
        vae_tiling=_vae_tiling(options.vae_tiling, preset, offload),
        quantize=quantize,
        attention=resolve_attention(options.attention or preset.attention, device, DTYPES[dtype]),
        compile=options.compile,
        cache=cache,
        mag_ratios=() if source else preset.mag_ratios,  # --mag-ratios wins over the preset's
        mag_source=source,
    )


def with_loras(
    runtime: Runtime,
    given: tuple[str, ...] | list[str] | None,
    model: Model,
    notes: list[str],
    reader: InputReader | None = None,
) -> Runtime:
    """The runtime with the request's LoRAs, checked against the model's transformer config and the
    runtime's dtype (through `reader`, a batch's, once per distinct --lora)."""
    texts = model.preset.lora if given is None or given == [] else tuple(given)
    loras = check_loras(texts, model.family, model.configs, notes, reader, runtime.dtype, model.info.experts)
    return replace(runtime, loras=loras)


def check_loras(
    texts: tuple[str, ...],
    family: Family,
    configs: Path,
    notes: list[str],
    reader: InputReader | None = None,
    dtype: torch.dtype = torch.float32,
    experts: int = 1,
) -> tuple[Lora, ...]:
    """Each `--lora TEXT` found and checked against the transformer's config in `configs` (no weights
    load) and the run's `dtype`; raises VidgenError for a file that cannot apply to this model (of
    `experts` transformers: `high=` and `low=` name one)."""
    from vidgen.runtime.lora import check_lora  # diffusers' loaders load only when a LoRA is given

    check = partial(
        check_lora, family=family, config_folder=configs, notes=notes, dtype=dtype, experts=experts
    )
    if reader is None:
        return tuple(check(text) for text in texts)
    # A batch runs in one dtype, so a LoRA's check holds for every job that names it.
    return tuple(reader.lora(text, family.name, partial(check, text)) for text in texts)


def check_memory_options(offload: str, quantize: str, device: str) -> None:
    """--offload and --quantize can run together on this device; checked before anything loads."""
    if offload not in OFFLOADS:
        raise VidgenError(f"unknown --offload {offload}", f"use one of {', '.join(OFFLOADS)}")
    check_quantize(quantize, device)
    if quantize in ("fp8", "int8") and offload in ("group", "sequential"):
        # torchao's quantized weights are tensor subclasses that the offload hooks cannot stream.
        raise VidgenError(
            f"--quantize {quantize} cannot be combined with --offload {offload}",
            f"use --quantize fp8-storage with --offload {offload}, or --offload model with {quantize}",
        )


def _vae_tiling(given: bool | None, preset: Preset, offload: str) -> bool | None:
    """The user's choice; else the preset's when it tiles; else, under auto offload, the planner's."""
    if given is not None:
        return given
    return None if offload == "auto" and not preset.vae_tiling else preset.vae_tiling


def check_mag_source(value: str | None, cache: str) -> str | None:
    """`--mag-ratios`: "measure", or a ratios file that reads whole (as an absolute path)."""
    from vidgen.runtime.mag_cache import MEASURE, read_ratios

    if value is None:
        return None
    if cache != "mag":
        raise VidgenError("--mag-ratios is for --cache mag", "add --cache mag, or drop --mag-ratios")
    if value == MEASURE:
        return value
    path = Path(value).expanduser()
    if not path.is_file():
        raise VidgenError(f"--mag-ratios file '{value}' does not exist", "give a ratios file, or measure")
    _, problem = read_ratios(path)
    if problem:
        raise VidgenError(f"--mag-ratios file '{value}' is {problem}", "give a ratios file, or measure")
    return str(path.resolve())


def check_cache(mode: str) -> str:
    """The `--cache` mode, if vidgen can run it."""
    if mode not in CACHE_MODES:
        raise VidgenError(f"unknown step cache '{mode}'", f"use {', '.join(CACHE_MODES)}")
    return mode


# What `--parallel` can run with. Ulysses goes through any backend diffusers marks as context-parallel;
# ring attention merges partial results by their log-sum-exp, which PyTorch's SDPA does not return (so
# on CUDA ring needs cuDNN, FlashAttention or SageAttention; on the CPU vidgen runs each ring step with
# PyTorch's CPU flash kernel, which does). FlashAttention-3, flex and xformers have no context-parallel
# path in diffusers.
ULYSSES_ATTENTION = ("flash", "cudnn", "sdpa", "sage")  # fastest first; sage only when asked for
RING_ATTENTION = ("flash", "cudnn", "sage")
CPU_RING_ATTENTION = ("sdpa",)


def parallel_runtime(options: Options, runtime: Runtime, heads: int, guidance: bool, rank: Rank) -> Runtime:
    """`runtime` with the `--parallel` plan for this torchrun world (vidgen.runtime.parallel.choose_plan)
    and an attention backend that runs it; levers that cannot run split are one-line errors here."""
    from vidgen.runtime.parallel import choose_plan

    plan = choose_plan(options.parallel, rank, heads, guidance)
    if plan.world_size == 1:
        return runtime
    if runtime.cache != "none":
        # Each rank would decide from its own slice of tokens whether to skip a step: the ranks part.
        raise VidgenError("--cache cannot run under torchrun with --parallel", "drop --cache")
    if runtime.offload in ("group", "sequential"):
        raise VidgenError(
            f"--offload {runtime.offload} cannot run under torchrun with --parallel",
            "use --offload model or none (each rank holds the whole model)",
        )
    if runtime.offload == "auto" and torch.device(runtime.device).type == "cuda":
        # The planner may pick group offload, whose hooks were never run beside the context-parallel
        # ones: each stage's model comes to the GPU whole instead.
        runtime = replace(runtime, offload="model")
    able = ULYSSES_ATTENTION
    if plan.ring > 1:
        able = CPU_RING_ATTENTION if torch.device(runtime.device).type == "cpu" else RING_ATTENTION
    attention = runtime.attention
    if attention not in able:
        if options.attention not in (None, "auto"):
            raise VidgenError(
                f"--attention {attention} cannot run {plan.describe()} attention",
                f"use --attention {' or '.join(able)}",
            )
        runnable = [
            n for n in able if not attention_problems(ATTENTION_BACKENDS[n], runtime.device, runtime.dtype)
        ]
        if not runnable:
            raise VidgenError(
                f"{plan.describe()} attention needs --attention {' or '.join(able)}, none of which runs on "
                f"{runtime.device} in {dtype_name(runtime.dtype)}",
                "use --parallel ulysses (world sizes that divide the heads) or cfg, or CUDA GPUs in bf16",
            )
        attention = runnable[0]
    return replace(runtime, parallel=plan, attention=attention)


def join_ranks(rank: Rank, device: str, options: object) -> None:
    """Under torchrun: join the other ranks and check that all were given the same options and prompts
    (before any weights load, so a mistake costs nothing). A lone process does nothing."""
    if not rank.distributed:
        return
    from vidgen.runtime.parallel import agree, start

    start(rank, device)
    agree(options, "options")


def check_split(plan: ParallelPlan, request: Request, info: ModelInfo, family: Family) -> ParallelPlan:
    """`plan` made ready for this request's token counts (or a VidgenError where they cannot split)."""
    if plan.cfg > 1 and not info.guidance_batched:
        raise VidgenError(
            f"--parallel cfg does not run {family.title}: its pipeline runs the guidance branches one after "
            "the other",
            "use --parallel ulysses or auto",
        )
    if plan.sequence == 1:
        return plan
    from vidgen.runtime.parallel import split_tokens

    if family.token_counts is not None:
        return _check_even_split(plan, request, family.token_counts(request, info), family)
    patch, patch_t = info.patch_size, info.patch_size_t or 1
    latent_frames = -(-info.latent_frames(request.frames) // patch_t)
    cells = (request.height // info.spatial_scale // patch) * (request.width // info.spatial_scale // patch)
    return split_tokens(plan, {"text": request.max_sequence_length, "video": latent_frames * cells})


def _check_even_split(plan: ParallelPlan, request: Request, counts: set[int], family: Family) -> ParallelPlan:
    """A family that splits each of its sequences into equal slices (Helios' [history; chunk], the
    model's `_rank_order`): every one of its token counts must divide by the ranks."""
    if all(count % plan.sequence == 0 for count in counts):
        return plan
    fits = [n for n in range(2, 17) if all(count % n == 0 for count in counts)]
    raise VidgenError(
        f"{plan.describe()} cannot split {possessive(family.title)} sequences at "
        f"{request.width}x{request.height} ({family.token_count_parts}: "
        f"{', '.join(map(str, sorted(counts)))} tokens) evenly over {plan.sequence} ranks",
        f"use {', '.join(map(str, fits))} ranks" if fits else "use another --height/--width",
    )


def possessive(name: str) -> str:
    """Helios' and CogVideoX's."""
    return f"{name}'" if name.endswith("s") else f"{name}'s"
