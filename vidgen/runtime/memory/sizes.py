"""The weight bytes of a model folder's parts, read from safetensors headers without reading weights.

A safetensors file starts with an 8-byte little-endian header length and a JSON header giving every
tensor's dtype and shape, so a 28 GB transformer is sized by reading a few hundred kilobytes.
"""

import math
import re
from pathlib import Path

import torch

from vidgen.runtime.memory.plan import Parts
from vidgen.weights.model_check import names_part, read, read_header, weight_files

# safetensors dtype names -> whether the tensor is floating point (it takes the compute dtype on load)
FLOATING = {"F64", "F32", "F16", "BF16", "F8_E4M3", "F8_E5M2"}
# A block index in a parameter name: `transformer_blocks.12.`, `blocks.3.`, `encoder.block.7.`, CLIP's
# `encoder.layers.31.`.
BLOCK = re.compile(r"(?:^|\.)(?:transformer_blocks|blocks|block|layers)\.(\d+)\.")
# By the time a plan is made the folder has passed vidgen.weights.model_check; this only shows if it
# changed since.
REPAIR = "the model changed on disk while vidgen ran; download it again"


def component_tensors(folder: Path, component: str) -> dict[str, tuple[str, list[int]]]:
    """A component's tensors (name -> safetensors dtype, shape), from every file its index names."""
    tensors: dict[str, tuple[str, list[int]]] = {}
    for path in weight_files(folder, component, REPAIR):
        tensors.update(read_header(path, REPAIR))
    return tensors


def loaded_bytes(tensors: dict[str, tuple[str, list[int]]], dtype: torch.dtype) -> int:
    """Bytes once loaded: floating tensors take `dtype`, others keep their own width."""
    size = torch.empty((), dtype=dtype).element_size()
    return sum(
        math.prod(shape) * (size if kind in FLOATING else _width(kind)) for kind, shape in tensors.values()
    )


def block_count(tensors: dict[str, tuple[str, list[int]]]) -> int:
    """How many repeated blocks the parameter names show (at least 1)."""
    indices = {int(match.group(1)) for name in tensors if (match := BLOCK.search(name))}
    return max(len(indices), 1)


def folder_parts(folder: Path, dtype: torch.dtype, vae_dtype: torch.dtype, experts: int = 1) -> Parts:
    """Each part's bytes as vidgen loads it: text encoder and transformer in `dtype`, VAE in `vae_dtype`;
    with two `experts`, transformer_2 too; a CLIP image encoder (Wan 2.1 I2V) where model_index.json
    names one, in float32 as the pipeline loads it whatever `dtype`."""
    text = component_tensors(folder, "text_encoder")
    transformer = component_tensors(folder, "transformer")
    vae = component_tensors(folder, "vae")
    second = component_tensors(folder, "transformer_2") if experts > 1 else {}
    image = component_tensors(folder, "image_encoder") if _names(folder, "image_encoder") else {}
    return Parts(
        text_encoder=loaded_bytes(text, dtype),
        transformer=loaded_bytes(transformer, dtype),
        vae=loaded_bytes(vae, vae_dtype),
        text_encoder_blocks=block_count(text),
        transformer_blocks=block_count(transformer),
        transformer_2=loaded_bytes(second, dtype),
        image_encoder=loaded_bytes(image, torch.float32),
        image_encoder_blocks=block_count(image),
    )


def _names(folder: Path, component: str) -> bool:
    """Whether the folder's model_index.json names `component` (an optional part: Wan 2.1's CLIP)."""
    if not (folder / "model_index.json").is_file():  # a bare folder of parts, as tests build
        return False
    return names_part(read(folder, "model_index.json", REPAIR), component)


def _width(dtype: str) -> int:
    digits = re.sub(r"\D", "", dtype.split("_")[0]) or "8"
    return max(int(digits) // 8, 1)
