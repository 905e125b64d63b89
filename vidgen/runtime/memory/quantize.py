"""Weights in fewer bytes: `--quantize fp8 | int8 | fp8-storage`, applied to a loaded transformer.

- fp8-storage: weights stored as float8 and cast to the compute dtype one layer at a time as it runs
  (diffusers' layerwise casting); half the weight bytes on any device, the CPU included.
- int8: int8 weight-only through torchao; half the bytes on any device, the CPU included.
- fp8: fp8 weights and dynamically quantized fp8 activations through torchao, on GPUs with fp8 matmuls
  (compute capability 8.9 and newer): half the bytes and faster matmuls.
The modules a model keeps in float32 (norms, time embeddings, modulation tables) and its embeddings
and output projection stay as they are: they are small and their precision shows in every frame.
"""

import importlib.util
import re
import warnings

import torch
from torch import nn

from vidgen.core.choices import QUANTIZE_MODES
from vidgen.core.errors import VidgenError

MODES = QUANTIZE_MODES
FP8_STORAGE_DTYPE = torch.float8_e4m3fn
# Name patterns left in the compute dtype: diffusers' defaults (embeddings, norms, the first and last
# projections) plus what vidgen's models name their float32-kept parts.
KEPT_PATTERNS = (
    "pos_embed",
    "patch_embed",
    "norm",
    "^proj_in$",
    "^proj_out$",
    "time_embed",
    "time_embedding",
    "scale_shift_table",
    "condition_embedder",
    "history_key_scale",
)


def check_quantize(mode: str, device: str) -> None:
    """Raise a one-line error, before anything loads, when `mode` cannot run here."""
    if mode not in MODES:
        raise VidgenError(f"unknown --quantize {mode}", f"use one of {', '.join(MODES)}")
    if mode in ("fp8", "int8") and importlib.util.find_spec("torchao") is None:
        raise VidgenError(
            f"--quantize {mode} needs torchao, which is not installed",
            'pip install "vidgen[fast]", or use --quantize fp8-storage (no extra package)',
        )
    if mode == "fp8" and not _has_fp8_matmul(device):
        raise VidgenError(
            f"--quantize fp8 needs a CUDA GPU with fp8 matmuls (compute capability 8.9 or newer), "
            f"which {device} is not",
            "use --quantize int8 or --quantize fp8-storage (both run on any device)",
        )


def _has_fp8_matmul(device: str) -> bool:
    if torch.device(device).type != "cuda":
        return False
    return torch.cuda.get_device_capability(torch.device(device)) >= (8, 9)


def quantize(model: nn.Module, mode: str, compute_dtype: torch.dtype) -> nn.Module:
    """Apply `mode` to a loaded model in place (on the CPU, before it moves to the device); returns it."""
    if mode == "none":
        return model
    if mode == "fp8-storage":
        from diffusers.hooks import apply_layerwise_casting

        apply_layerwise_casting(
            model,
            storage_dtype=FP8_STORAGE_DTYPE,
            compute_dtype=compute_dtype,
            skip_modules_pattern=KEPT_PATTERNS,
        )
        return model
    with warnings.catch_warnings():  # torchao warns about kernels built for other GPUs on import
        warnings.simplefilter("ignore")
        from torchao.quantization import (
            Float8DynamicActivationFloat8WeightConfig,
            Int8WeightOnlyConfig,
            quantize_,
        )
    config = Int8WeightOnlyConfig() if mode == "int8" else Float8DynamicActivationFloat8WeightConfig()
    quantize_(model, config, filter_fn=_quantizable)
    return model


def _quantizable(module: nn.Module, name: str) -> bool:
    """torchao's filter: the blocks' linear layers, not the kept embeddings, norms and projections."""
    return isinstance(module, nn.Linear) and not any(re.search(pattern, name) for pattern in KEPT_PATTERNS)


def weight_bytes(model: nn.Module) -> int:
    """The model's parameter and buffer bytes as held for compute (quantized tensors count their storage)."""
    return sum(_storage_bytes(tensor) for tensor in [*model.parameters(), *model.buffers()])


def _storage_bytes(tensor: torch.Tensor) -> int:
    """Bytes of a tensor, or of the inner tensors of a tensor subclass (torchao's int8/fp8 weights)."""
    if type(tensor) not in (torch.Tensor, nn.Parameter) and hasattr(tensor, "__tensor_flatten__"):
        names, _ = tensor.__tensor_flatten__()
        return sum(_storage_bytes(getattr(tensor, name)) for name in names)
    return tensor.numel() * tensor.element_size()
