"""The offload planner, fed the released models' real sizes: which plan each card gets, and why."""

import pytest
import torch
from diffusers import AutoencoderKLCogVideoX, AutoencoderKLWan
from model_infos import HELIOS_DISTILLED, RELEASED, cogvideox_info
from transformers import T5Config, T5EncoderModel, UMT5Config, UMT5EncoderModel

from vidgen.core.errors import OUT_OF_MEMORY, VidgenError
from vidgen.models import CogVideoXTransformer3DModel, HeliosTransformer3DModel
from vidgen.runtime.memory.plan import GB, PLANS, Parts, Work, choose_plan, device_peak, host_need, next_plan
from vidgen.runtime.memory.work import Footprint, stage_work

HOST = int(64 * GB)
# The released transformer configs' differences from the constructor defaults.
COGVIDEOX = {
    name: RELEASED[variant]
    for name, variant in (("cogvideox-2b", "2b"), ("cogvideox-5b", "5b"), ("cogvideox1.5-5b", "1.5-5b"))
}
# (height, width, frames) each preset generates by default.
SIZES = {"cogvideox-2b": (480, 720, 49), "cogvideox-5b": (480, 720, 49), "cogvideox1.5-5b": (768, 1360, 81)}
XXL = dict(d_model=4096, d_kv=64, d_ff=10240, num_layers=24, num_heads=64, feed_forward_proj="gated-gelu")


def count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.fixture(scope="module")
def released() -> dict[str, tuple[Parts, Work]]:
    """Parts and working memory of the released presets at their default sizes, from meta builds."""
    cases = {}
    with torch.device("meta"):
        t5 = count(T5EncoderModel(T5Config(vocab_size=32128, **XXL)))
        umt5 = count(UMT5EncoderModel(UMT5Config(vocab_size=256384, **XXL)))
        cog, wan = AutoencoderKLCogVideoX(), AutoencoderKLWan()
        for name, switches in COGVIDEOX.items():
            model = CogVideoXTransformer3DModel(**switches)
            parts = Parts(2 * t5, 2 * count(model), 2 * count(cog), 24, len(model.transformer_blocks))
            info = cogvideox_info(model.config)
            height, width, frames = SIZES[name]
            footprint = Footprint(model.config.num_attention_heads * 64, cog.config.block_out_channels[0])
            work = stage_work(info, footprint, height, width, frames, True, 2)
            cases[name] = parts, work
        helios = HeliosTransformer3DModel()
        parts = Parts(2 * umt5, 2 * count(helios), 4 * count(wan), 24, len(helios.blocks))
        for name, guidance in (("helios-base", True), ("helios-distilled", False)):
            footprint = Footprint(40 * 128, wan.config.base_dim, ffn_dim=helios.config.ffn_dim)
            work = stage_work(HELIOS_DISTILLED, footprint, 384, 640, 33, guidance, 2)
            cases[name] = parts, work
    return cases


NAMES = ["cogvideox-2b", "cogvideox-5b", "cogvideox1.5-5b", "helios-base", "helios-distilled"]


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("card", [80, 24, 16])
def test_every_released_preset_has_a_plan_that_fits_80_24_and_16_gb_cards(released, name, card):
    parts, work = released[name]
    plan = choose_plan(int(card * GB), HOST, parts, work)
    assert plan.device_bytes <= card * GB
    assert plan.offload != "auto" and plan.offload in {offload for offload, _ in PLANS}
    assert plan.reason.startswith(f"{card:.1f} GB free, transformer {parts.transformer / GB:.1f} GB: ")


@pytest.mark.parametrize("name", NAMES)
def test_an_8_gb_card_gets_an_offload_plan_that_fits_or_a_clear_out_of_memory_error(released, name):
    parts, work = released[name]
    try:
        plan = choose_plan(int(8 * GB), HOST, parts, work)
    except VidgenError as error:
        assert error.exit_code == OUT_OF_MEMORY
        assert "the smallest plan needs" in str(error) and "\n" not in str(error)
    else:
        assert plan.offload in ("group", "sequential")
        assert plan.device_bytes <= 8 * GB


def test_plans_get_slower_as_the_card_gets_smaller(released):
    parts, work = released["helios-distilled"]
    order = [plan for plan, _ in PLANS]
    chosen = [choose_plan(int(card * GB), HOST, parts, work).offload for card in (141, 80, 48, 24, 16, 4)]
    indices = [order.index(offload) for offload in chosen]
    assert indices == sorted(indices)
    assert chosen[0] == "none" and chosen[3] == "group"


def test_helios_on_a_24_gb_card_streams_groups_of_blocks(released):
    parts, work = released["helios-distilled"]
    plan = choose_plan(int(24 * GB), HOST, parts, work)
    assert (plan.offload, plan.quantize) == ("group", "none")
    assert plan.reason == "24.0 GB free, transformer 28.6 GB: group offload"


def test_too_little_host_memory_for_bf16_weights_takes_fp8_storage(released):
    parts, work = released["helios-distilled"]
    host = parts.total - int(GB)  # the bf16 weights do not fit in RAM; half the transformer does
    plan = choose_plan(int(24 * GB), host, parts, work)
    assert (plan.offload, plan.quantize) == ("group", "fp8-storage")
    assert host_need(plan.offload, plan.quantize, parts) <= host


def test_vae_tiling_turns_on_only_when_the_untiled_decode_does_not_fit():
    parts = Parts(int(1 * GB), int(2 * GB), int(0.5 * GB), 2, 4)
    work = Work(text=0, denoise=int(1 * GB), decode=int(6 * GB), decode_tiled=int(1 * GB))
    roomy = choose_plan(int(20 * GB), HOST, parts, work)
    tight = choose_plan(int(5 * GB), HOST, parts, work)
    assert (roomy.offload, roomy.vae_tiling) == ("none", False)
    assert (tight.offload, tight.vae_tiling) == ("none", True)
    assert tight.reason.endswith("everything resident, VAE tiling")


def test_the_users_vae_tiling_choice_is_kept_even_when_it_costs_a_slower_plan():
    parts = Parts(int(1 * GB), int(2 * GB), int(0.5 * GB), 2, 4)
    work = Work(text=0, denoise=int(1 * GB), decode=int(6 * GB), decode_tiled=int(1 * GB))
    assert choose_plan(int(7 * GB), HOST, parts, work).offload == "none"  # with tiling
    plan = choose_plan(int(7 * GB), HOST, parts, work, vae_tiling=False)
    assert plan.vae_tiling is False
    assert device_peak(plan.offload, plan.quantize, parts, work, False) <= 7 * GB
    assert plan.offload == "model"


def test_host_memory_too_small_for_any_offload_is_an_out_of_memory_error_about_ram():
    parts = Parts(int(10 * GB), int(20 * GB), int(1 * GB), 24, 40)
    work = Work(text=0, denoise=int(1 * GB), decode=int(1 * GB), decode_tiled=int(1 * GB))
    with pytest.raises(VidgenError, match="host memory") as caught:
        choose_plan(int(4 * GB), int(8 * GB), parts, work)
    assert caught.value.exit_code == OUT_OF_MEMORY


def test_next_plan_names_the_option_to_try_after_an_out_of_memory_error():
    assert next_plan("none", "none") == "--offload model"
    assert next_plan("group", "none") == "--offload group --quantize fp8-storage"
    assert next_plan("sequential", "none") is None
