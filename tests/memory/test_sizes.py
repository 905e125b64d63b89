"""Part sizes from safetensors headers equal the loaded models' bytes, without reading any weight."""

import pytest
import torch
from diffusers import AutoencoderKLCogVideoX
from transformers import T5EncoderModel

from vidgen.families import registry
from vidgen.models import CogVideoXTransformer3DModel
from vidgen.runtime.memory.sizes import folder_parts


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return registry.ensure_tiny("cogvideox", "t2v", cache_dir=tmp_path_factory.mktemp("cache"))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_header_sizes_equal_the_loaded_models_bytes(folder, dtype):
    parts = folder_parts(folder, dtype, vae_dtype=torch.float32)
    transformer = CogVideoXTransformer3DModel.from_pretrained(folder, subfolder="transformer", dtype=dtype)
    encoder = T5EncoderModel.from_pretrained(folder / "text_encoder", dtype=dtype)
    vae = AutoencoderKLCogVideoX.from_pretrained(folder, subfolder="vae", dtype=torch.float32)
    # Buffers computed at construction (sin-cos tables) are not in the checkpoint; parameters all are.
    assert parts.transformer == sum(p.numel() * p.element_size() for p in transformer.parameters())
    assert parts.text_encoder == sum(p.numel() * p.element_size() for p in encoder.parameters())
    assert parts.vae == sum(p.numel() * p.element_size() for p in vae.parameters())
    assert parts.transformer_blocks == len(transformer.transformer_blocks)
    assert parts.text_encoder_blocks == encoder.config.num_layers


def test_sharded_component_is_sized_from_the_files_its_index_names(folder, tmp_path):
    encoder = T5EncoderModel.from_pretrained(folder / "text_encoder")
    sharded = tmp_path / "text_encoder"
    encoder.save_pretrained(sharded, max_shard_size="20KB")
    assert len(list(sharded.glob("*.safetensors"))) > 1
    (sharded / "stray.safetensors").write_bytes(
        (sharded / next(iter(sorted(sharded.glob("*.safetensors"))))).read_bytes()
    )
    for part in ("transformer", "vae"):
        (tmp_path / part).symlink_to(folder / part)
    parts = folder_parts(tmp_path, torch.float32, torch.float32)
    assert parts.text_encoder == sum(p.numel() * 4 for p in encoder.parameters())
