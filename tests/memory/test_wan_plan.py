"""The Wan 2.1 memory estimate, fed the released 1.3B and 14B configs (MODELS.md: 12 heads x 128, 30
layers, FFN 8960; 40 x 128, 40 layers, FFN 13824; UMT5-XXL; the 2.1 VAE) written as a folder's JSON
configs and read as `vidgen` reads them: the part sizes, the working memory and the plan each card gets.
"""

import json

import pytest
import torch
from diffusers import AutoencoderKLWan
from transformers import UMT5Config, UMT5EncoderModel

from vidgen.families.wan.info import read_wan_info
from vidgen.models import WanTransformer3DModel
from vidgen.runtime.memory.plan import GB, Parts, choose_plan
from vidgen.runtime.memory.work import least_bytes, read_footprint, stage_work

HOST = int(128 * GB)
RELEASED = {"1.3b": dict(num_attention_heads=12, num_layers=30, ffn_dim=8960), "14b": dict()}
UMT5_XXL = dict(
    vocab_size=256384, d_model=4096, d_kv=64, d_ff=10240, num_layers=24, num_heads=64,
    feed_forward_proj="gated-gelu",
)  # fmt: skip
BF16 = 2


def count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.fixture(scope="module")
def released(tmp_path_factory):
    """name -> (folder of the released configs, Parts in bf16 with the VAE in fp32)."""
    cases = {}
    with torch.device("meta"):
        encoder, vae = UMT5EncoderModel(UMT5Config(**UMT5_XXL)), AutoencoderKLWan()
        for name, switches in RELEASED.items():
            transformer = WanTransformer3DModel(**switches)
            folder = tmp_path_factory.mktemp(f"wan2.1-t2v-{name}")
            for part, config in (("transformer", transformer.config), ("vae", vae.config)):
                (folder / part).mkdir()
                (folder / part / "config.json").write_text(json.dumps(dict(config)))
            (folder / "text_encoder").mkdir()
            encoder.config.to_json_file(folder / "text_encoder" / "config.json")
            (folder / "model_index.json").write_text(json.dumps({"_class_name": "WanPipeline"}))
            parts = Parts(BF16 * count(encoder), BF16 * count(transformer), 4 * count(vae), 24, 40)
            cases[name] = folder, parts
    return cases


def work(folder, height: int, width: int, frames: int, guided: bool = True):
    return stage_work(read_wan_info(folder), read_footprint(folder), height, width, frames, guided, BF16)


def test_the_parts_weigh_what_the_released_checkpoints_do(released):
    _, small = released["1.3b"]
    _, large = released["14b"]
    assert 2.7 * GB < small.transformer < 3.0 * GB  # 1.42 billion parameters in bf16
    assert 28.0 * GB < large.transformer < 29.0 * GB  # 14.3 billion
    assert 11.0 * GB < large.text_encoder < 11.6 * GB  # UMT5-XXL's encoder, 5.7 billion
    assert 0.45 * GB < large.vae < 0.55 * GB  # 127 million in fp32


def test_the_denoise_peak_holds_one_guidance_branch_as_the_pipeline_runs_them_one_after_the_other(released):
    folder, _ = released["14b"]
    # 720x1280, 81 frames: 21 latent frames of 45 x 80 patches; per token 7 hidden-width (5120) and
    # 2 feed-forward-width (13824) tensors in bf16, for the conditional branch, then the unconditional.
    one_branch = 21 * 45 * 80 * (7 * 5120 + 2 * 13824) * BF16
    assert work(folder, 720, 1280, 81).denoise == one_branch
    assert work(folder, 720, 1280, 81, guided=False).denoise == one_branch
    info, footprint = read_wan_info(folder), read_footprint(folder)
    floor = least_bytes(720, 1280, 81, info, footprint, BF16, vae_tiling=True, guided=True)
    assert floor == least_bytes(720, 1280, 81, info, footprint, BF16, vae_tiling=True, guided=False)


@pytest.mark.parametrize(
    ("name", "card", "size", "offload"),
    [
        ("1.3b", 24, (480, 832, 81), "none"),
        ("1.3b", 16, (480, 832, 81), "model"),  # UMT5-XXL alone is 11.4 GB
        ("1.3b", 8, (480, 832, 81), "group"),
        ("14b", 80, (720, 1280, 81), "none"),
        # The transformer (28.6 GB) and one branch's 9.6 GB of activations: an A100 40 GB holds both.
        ("14b", 40, (720, 1280, 81), "model"),
        ("14b", 24, (480, 832, 81), "group"),
    ],
)
def test_each_card_gets_the_fastest_plan_that_fits(released, name, card, size, offload):
    folder, parts = released[name]
    plan = choose_plan(int(card * GB), HOST, parts, work(folder, *size))
    assert (plan.offload, plan.quantize) == (offload, "none")
    assert plan.device_bytes <= card * GB
