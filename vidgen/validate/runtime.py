"""How a command runs, apart from what it generates: device, precision, offload and VAE tiling.

Every runtime lever lives here, checked once for every command (t2v, i2v, v2v, stream, batch), so a
new lever is one function here and one Runtime field, not a branch in each command.
"""

import torch

from vidgen.errors import VidgenError
from vidgen.memory.quantize import check_quantize
from vidgen.presets import Preset
from vidgen.request import Runtime
from vidgen.validate.common import Options

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def resolve_device(device: str | None) -> str:
    """The device to run on: as given (and available), else CUDA when there is one, else the CPU."""
    if device is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        kind = torch.device(device).type
    except RuntimeError:
        raise VidgenError(f"unknown device '{device}'", "use cpu, cuda or cuda:N") from None
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
    return Runtime(
        device=device,
        dtype=DTYPES[dtype],
        offload=offload,
        vae_tiling=_vae_tiling(options.vae_tiling, preset, offload),
        quantize=quantize,
    )


OFFLOADS = ("auto", "none", "model", "group", "sequential")


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


def dtype_name(dtype: torch.dtype) -> str:
    return next(name for name, value in DTYPES.items() if value == dtype)
