"""The weight bytes of a model folder's parts, read from safetensors headers without reading weights.

A safetensors file starts with an 8-byte little-endian header length and a JSON header giving every
tensor's dtype and shape, so a 28 GB transformer is sized by reading a few hundred kilobytes.
"""

import json
import math
import re
import struct
from pathlib import Path

import torch

from vidgen.errors import VidgenError
from vidgen.memory.plan import Parts

# safetensors dtype names -> whether the tensor is floating point (it takes the compute dtype on load)
FLOATING = {"F64", "F32", "F16", "BF16", "F8_E4M3", "F8_E5M2"}
# A block index in a parameter name: `transformer_blocks.12.`, `blocks.3.`, `encoder.block.7.`.
BLOCK = re.compile(r"(?:^|\.)(?:transformer_blocks|blocks|block)\.(\d+)\.")
MAX_HEADER = 100 * 2**20  # the format's own limit


def read_header(path: Path) -> dict[str, dict]:
    """The tensors of one safetensors file: name -> {"dtype", "shape", "data_offsets"}."""
    try:
        with path.open("rb") as file:
            (length,) = struct.unpack("<Q", file.read(8))
            if length > MAX_HEADER:
                raise ValueError(f"header length {length} is not a safetensors header")
            header = json.loads(file.read(length))
    except (OSError, ValueError, struct.error) as error:
        raise VidgenError(
            f"cannot read the safetensors header of '{path}': {error}",
            "the file is damaged or incomplete; download the model again",
        ) from None
    header.pop("__metadata__", None)
    return header


def weight_files(component: Path) -> list[Path]:
    """The safetensors files of one component folder: those its index names, else every one."""
    for index in sorted(component.glob("*.safetensors.index.json")):
        weight_map = json.loads(index.read_text()).get("weight_map", {})
        return sorted({component / name for name in weight_map.values()})
    return sorted(component.glob("*.safetensors"))


def component_tensors(component: Path) -> dict[str, dict]:
    tensors: dict[str, dict] = {}
    for path in weight_files(component):
        tensors.update(read_header(path))
    return tensors


def loaded_bytes(tensors: dict[str, dict], dtype: torch.dtype) -> int:
    """Bytes once loaded: floating tensors take `dtype`, others keep their own width."""
    size = torch.empty((), dtype=dtype).element_size()
    total = 0
    for info in tensors.values():
        count = math.prod(info["shape"])
        total += count * (size if info["dtype"] in FLOATING else _width(info["dtype"]))
    return total


def block_count(tensors: dict[str, dict]) -> int:
    """How many repeated blocks the parameter names show (at least 1)."""
    indices = {int(match.group(1)) for name in tensors if (match := BLOCK.search(name))}
    return max(len(indices), 1)


def folder_parts(folder: Path, dtype: torch.dtype, vae_dtype: torch.dtype) -> Parts:
    """Each part's bytes as vidgen loads it: text encoder and transformer in `dtype`, VAE in `vae_dtype`."""
    text = component_tensors(folder / "text_encoder")
    transformer = component_tensors(folder / "transformer")
    vae = component_tensors(folder / "vae")
    return Parts(
        text_encoder=loaded_bytes(text, dtype),
        transformer=loaded_bytes(transformer, dtype),
        vae=loaded_bytes(vae, vae_dtype),
        text_encoder_blocks=block_count(text),
        transformer_blocks=block_count(transformer),
    )


def _width(dtype: str) -> int:
    digits = re.sub(r"\D", "", dtype.split("_")[0]) or "8"
    return max(int(digits) // 8, 1)
