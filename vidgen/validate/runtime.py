"""How a command runs, apart from what it generates: device, precision, offload and VAE tiling.

Every runtime lever lives here, checked once for every command (t2v, i2v, v2v, stream, batch), so a
new lever is one function here and one Runtime field, not a branch in each command.
"""

import torch

from vidgen.errors import VidgenError
from vidgen.presets import Preset
from vidgen.request import Runtime
from vidgen.validate.common import Options

DEVICE_KINDS = ("cpu", "cuda", "mps")
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


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
    return Runtime(
        device=device,
        dtype=DTYPES[dtype],
        offload=options.offload,
        vae_tiling=options.vae_tiling if options.vae_tiling is not None else preset.vae_tiling,
    )


def dtype_name(dtype: torch.dtype) -> str:
    return next(name for name, value in DTYPES.items() if value == dtype)
