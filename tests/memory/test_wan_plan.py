"""The Wan memory estimate, fed the released checkpoints' configs (MODELS.md: the 1.3B's 12 heads x 128,
30 layers, FFN 8960; the 14B's 40 x 128, 40 layers, FFN 13824; UMT5-XXL; the 2.1 VAE; CLIP ViT-H for 2.1
I2V; two experts for 2.2 A14B) written as folders by bench/released_wan.py and read as `vidgen` reads
them: the part sizes, the working memory and the plan each card gets.
"""

import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from vidgen.core.request import Request, Runtime
from vidgen.families.wan.info import read_wan_info
from vidgen.runtime.memory.plan import GB, Parts, Work, choose_plan, device_peak, host_need
from vidgen.runtime.memory.sizes import folder_parts
from vidgen.runtime.memory.work import least_bytes, read_footprint, stage_work

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
from released_wan import released_models, write_released  # noqa: E402

HOST = int(128 * GB)
RELEASED = {"1.3b": "wan2.1-t2v-1.3b", "14b": "wan2.1-t2v-14b"}
BF16 = 2


def count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.fixture(scope="module")
def released(tmp_path_factory):
    """name -> (folder of the released configs, Parts in bf16 with the VAE in fp32, from the models'
    parameter counts rather than the folder's headers)."""
    cases = {}
    for name, preset in RELEASED.items():
        folder = write_released(tmp_path_factory.mktemp(preset), preset)
        models = released_models(preset)
        encoder, transformer, vae = (models[part] for part in ("text_encoder", "transformer", "vae"))
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


# --- the released image-to-video and two-expert folders, sized from their safetensors headers ---------


@pytest.fixture(scope="module")
def released_folders(tmp_path_factory):
    """name -> a folder of the released configs with header-only weights."""
    names = ("wan2.1-i2v-14b-480p", "wan2.2-t2v-a14b", "wan2.2-i2v-a14b")
    return {name: write_released(tmp_path_factory.mktemp(name), name) for name in names}


def planned(folder, free: float, mode: str, offload_plans=None, **runtime):
    """The `--offload auto` plan for the folder's default size on a card with `free` GB."""
    from vidgen.runtime.memory import auto
    from vidgen.runtime.memory.plan import PLANS

    info = read_wan_info(folder)
    height, width, frames = info.sample_size
    request = Request(mode=mode, prompt="a cat", guidance=5.0, height=height, width=width, frames=frames)
    return auto.plan_for(
        Runtime(device="cuda", dtype=torch.bfloat16, offload="auto", vae_tiling=None, **runtime),
        folder,
        request,
        info,
        int(free * GB),
        offload_plans or PLANS,
    )


@pytest.fixture
def roomy_host(monkeypatch):
    from vidgen.runtime.memory import auto

    monkeypatch.setattr(auto, "free_host", lambda: HOST)


def test_the_plan_counts_wan_2_1_i2vs_clip_image_encoder_in_float32(released_folders, roomy_host):
    folder = released_folders["wan2.1-i2v-14b-480p"]
    parts = folder_parts(folder, torch.bfloat16, torch.float32)
    # ViT-H's 0.63 billion parameters in float32 (the pipeline loads it so whatever --dtype), 32 layers.
    assert 2.4 * GB < parts.image_encoder < 2.6 * GB and parts.image_encoder_blocks == 32
    # 16.4 billion parameters: the 14B's and the image cross-attention's (the repo's 14 fp32 shards).
    assert 32.5 * GB < parts.transformer < 33.2 * GB and parts.transformer_2 == 0
    everything = parts.text_encoder + parts.transformer + parts.vae + parts.image_encoder
    plan = planned(folder, 80, "i2v")
    assert plan.offload == "none" and plan.device_bytes > everything
    assert host_need("model", "none", parts) == everything
    without = replace(parts, image_encoder=0)
    assert device_peak("none", "none", parts, Work(0, 0, 0, 0), False) == everything
    # A card that holds everything but the image encoder does not get "none".
    work = stage_work(read_wan_info(folder), read_footprint(folder), 480, 832, 81, True, BF16)
    edge = device_peak("none", "none", without, work, True) + int(1 * GB)
    assert choose_plan(edge, HOST, without, work).offload == "none"
    assert choose_plan(edge, HOST, parts, work).offload == "model"


@pytest.mark.parametrize(("name", "mode"), [("wan2.2-t2v-a14b", "t2v"), ("wan2.2-i2v-a14b", "i2v")])
def test_the_plan_counts_both_a14b_experts_and_model_offload_keeps_one_on_the_device(
    released_folders, roomy_host, name, mode
):
    folder = released_folders[name]
    assert read_wan_info(folder).experts == 2
    parts = folder_parts(folder, torch.bfloat16, torch.float32, experts=2)
    assert parts.transformer_2 == parts.transformer and 28.5 * GB < parts.transformer < 29.5 * GB
    assert parts.image_encoder == 0  # Wan 2.2 I2V takes the image in the latents alone
    both = parts.text_encoder + 2 * parts.transformer + parts.vae
    assert host_need("model", "none", parts) == both
    # Both experts (57 GB) with UMT5 and 720p's activations do not fit in 64 GB; one expert at a time does.
    plan = planned(folder, 64, mode)
    assert plan.offload == "model" and "one expert at a time" in plan.reason
    assert parts.transformer < plan.device_bytes < parts.transformer + parts.transformer_2
    one = replace(parts, transformer_2=0)
    work = stage_work(read_wan_info(folder), read_footprint(folder), 720, 1280, 81, True, BF16)
    assert device_peak("model", "none", parts, work, False) == device_peak("model", "none", one, work, False)
    everything = planned(folder, 200, mode)
    assert everything.offload == "none" and everything.device_bytes > both
    # --offload model, asked for: one expert resident; --quantize int8 shrinks both.
    model = planned(folder, 64, mode, (("model", "none"),))
    assert model.device_bytes == plan.device_bytes
    quantized = planned(folder, 200, mode, quantize="int8")
    assert quantized.device_bytes < everything.device_bytes - parts.transformer * 0.9
