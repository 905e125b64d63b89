"""diffusers' model APIs and hooks on vidgen's transformers, against diffusers' transformers with the same
weights in the same test: QKV fusion and its processors, pyramid attention broadcast, the first-block
cache on a bare model (no vidgen helper), and 5b-I2V's learned positions at other frame counts."""

import diffusers
import pytest
import torch
from diffusers.hooks import FirstBlockCacheConfig, PyramidAttentionBroadcastConfig
from diffusers.hooks._helpers import TransformerBlockMetadata, TransformerBlockRegistry
from diffusers.hooks.pyramid_attention_broadcast import apply_pyramid_attention_broadcast
from diffusers.models.attention_processor import AttnProcessor2_0

from vidgen.families.cogvideox.model import CogVideoXTransformer3DModel
from vidgen.families.helios.model import HeliosTransformer3DModel

FP32_TOLERANCE = 1e-5
COGVIDEOX = dict(
    num_attention_heads=2,
    attention_head_dim=16,
    in_channels=4,
    out_channels=4,
    num_layers=3,
    time_embed_dim=32,
    text_embed_dim=24,
    max_text_seq_length=7,
    sample_height=8,
    sample_width=12,
    sample_frames=9,
)
HELIOS = dict(
    num_attention_heads=2,
    attention_head_dim=16,
    in_channels=4,
    out_channels=4,
    text_dim=24,
    freq_dim=16,
    ffn_dim=40,
    num_layers=3,
    rope_dim=(4, 6, 6),
)
# Within PAB's default (100, 800) range from the second step on: steps 1 and 3 reuse attention.
TIMESTEPS = (900, 700, 500, 300)


def relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    return ((actual - expected).norm() / expected.norm()).item()


def pair(family: str, **overrides) -> tuple[torch.nn.Module, torch.nn.Module]:
    """(diffusers', vidgen's) transformer with the same random weights (none left at zeros or ones)."""
    theirs_cls, ours_cls, config = {
        "cogvideox": (diffusers.CogVideoXTransformer3DModel, CogVideoXTransformer3DModel, COGVIDEOX),
        "helios": (diffusers.HeliosTransformer3DModel, HeliosTransformer3DModel, HELIOS),
    }[family]
    torch.manual_seed(0)
    config = {**config, **overrides}
    theirs = theirs_cls(**config).eval()
    with torch.no_grad():
        for param in theirs.parameters():
            param.add_(torch.randn_like(param) * 0.1)
    ours = ours_cls(**config).eval()
    ours.load_state_dict(theirs.state_dict(), strict=True)
    return theirs, ours


def step_inputs(family: str, step: int, frames: int = 3) -> dict:
    """One denoising step's inputs: the same text, latents that drift a little from step to step."""
    generator = torch.Generator().manual_seed(1)
    if family == "cogvideox":
        latents = torch.randn(2, frames, 4, 8, 12, generator=generator)
        text = torch.randn(2, 7, 24, generator=generator)
    else:
        latents = torch.randn(2, 4, frames, 6, 10, generator=generator)
        text = torch.randn(2, 7, 24, generator=generator)
    drift = torch.randn(latents.shape, generator=torch.Generator().manual_seed(10 + step))
    timestep = torch.tensor([TIMESTEPS[step]] * 2)
    return {"hidden_states": latents + 0.05 * drift, "encoder_hidden_states": text, "timestep": timestep}


def denoise(model: torch.nn.Module, family: str, steps: int = len(TIMESTEPS)) -> list[torch.Tensor]:
    """The model's outputs over `steps` steps, called as diffusers' pipelines call it (cache context)."""
    outputs = []
    for step in range(steps):
        model.current_timestep = TIMESTEPS[step]
        with torch.no_grad(), model.cache_context("cond"):
            outputs.append(model(**step_inputs(family, step)).sample)
    return outputs


def assert_same_outputs(ours: list[torch.Tensor], theirs: list[torch.Tensor]) -> None:
    for step, (actual, expected) in enumerate(zip(ours, theirs, strict=True)):
        assert relative_error(actual, expected) <= FP32_TOLERANCE, f"step {step}"


# ---------------------------------------------------------------------------------------------------
# QKV fusion
# ---------------------------------------------------------------------------------------------------


def test_cogvideox_fused_qkv_matches_unfused_and_unfusing_restores_the_processors():
    theirs, ours = pair("cogvideox")
    inputs = step_inputs("cogvideox", 0)
    unfused = ours(**inputs).sample
    state = {name: tensor.clone() for name, tensor in ours.state_dict().items()}
    processors = ours.attn_processors
    assert len(processors) == len(theirs.attn_processors) == COGVIDEOX["num_layers"]

    theirs.fuse_qkv_projections()
    ours.fuse_qkv_projections()
    # What diffusers' pipeline tests check after `fuse_qkv_projections`.
    assert all(type(p).__name__.startswith("Fused") for p in ours.attn_processors.values())
    assert ours.original_attn_processors.keys() == theirs.original_attn_processors.keys()
    assert [type(p) for p in ours.original_attn_processors.values()] == [type(p) for p in processors.values()]
    fused = ours(**inputs).sample
    assert relative_error(fused, unfused) <= FP32_TOLERANCE
    assert relative_error(fused, theirs(**inputs).sample) <= FP32_TOLERANCE

    ours.unfuse_qkv_projections()
    assert [type(p) for p in ours.attn_processors.values()] == [type(p) for p in processors.values()]
    restored = ours.state_dict()
    assert restored.keys() == state.keys()
    assert all(torch.equal(restored[name], tensor) for name, tensor in state.items())
    assert torch.equal(ours(**inputs).sample, unfused)


def test_helios_set_attn_processor_switches_fusion_and_refuses_diffusers_processors():
    _, ours = pair("helios")
    inputs = step_inputs("helios", 0)
    unfused = ours(**inputs).sample
    ours.fuse_qkv_projections()
    fused_processors = ours.attn_processors
    assert len(fused_processors) == 2 * HELIOS["num_layers"]  # self- and cross-attention per block
    assert all(type(p).__name__.startswith("Fused") for p in fused_processors.values())
    assert relative_error(ours(**inputs).sample, unfused) <= FP32_TOLERANCE
    ours.unfuse_qkv_projections()
    assert not any(type(p).__name__.startswith("Fused") for p in ours.attn_processors.values())
    ours.set_attn_processor(fused_processors)
    assert ours.blocks[0].attn1.fused_projections and hasattr(ours.blocks[0].attn2, "to_kv")
    with pytest.raises(TypeError, match="cannot run diffusers' AttnProcessor2_0; pick its kernel"):
        ours.set_attn_processor(AttnProcessor2_0())


# ---------------------------------------------------------------------------------------------------
# Pyramid attention broadcast
# ---------------------------------------------------------------------------------------------------


def hooked_layers(model: torch.nn.Module) -> list[str]:
    return [
        name
        for name, module in model.named_modules()
        if hasattr(module, "_diffusers_hook")
        and module._diffusers_hook.get_hook("pyramid_attention_broadcast")
    ]


@pytest.mark.parametrize("family", ["cogvideox", "helios"])
def test_pyramid_attention_broadcast_hooks_the_same_layers_and_matches_diffusers(family):
    theirs, ours = pair(family)
    plain = denoise(ours, family)

    def config(model: torch.nn.Module) -> PyramidAttentionBroadcastConfig:
        return PyramidAttentionBroadcastConfig(
            spatial_attention_block_skip_range=2,
            cross_attention_block_skip_range=2,
            current_timestep_callback=lambda: model.current_timestep,
        )

    apply_pyramid_attention_broadcast(theirs, config(theirs))
    ours.enable_cache(config(ours))
    assert hooked_layers(ours) == hooked_layers(theirs)
    assert len(hooked_layers(ours)) == (1 if family == "cogvideox" else 2) * ours.config.num_layers
    broadcast = denoise(ours, family)
    assert_same_outputs(broadcast, denoise(theirs, family))
    # Steps 1 and 3 reused attention outputs (and step 2 was not hurt by that reuse).
    assert relative_error(broadcast[1], plain[1]) > 1e-3
    assert relative_error(broadcast[2], plain[2]) <= FP32_TOLERANCE


# ---------------------------------------------------------------------------------------------------
# First-block cache on a bare model
# ---------------------------------------------------------------------------------------------------


@pytest.fixture
def diffusers_helios_block_registered():
    # diffusers 0.42.1 registers no Helios block, so its own Helios model cannot take the first-block
    # cache; registered here (one tensor out, like vidgen's) to compare against.
    from diffusers.models.transformers.transformer_helios import HeliosTransformerBlock

    TransformerBlockRegistry.register(HeliosTransformerBlock, TransformerBlockMetadata())
    yield
    TransformerBlockRegistry._registry.pop(HeliosTransformerBlock)


@pytest.mark.parametrize("family", ["cogvideox", "helios"])
def test_first_block_cache_on_a_bare_model_matches_diffusers(family, diffusers_helios_block_registered):
    theirs, ours = pair(family)
    plain = denoise(ours, family)
    # High enough that this random model skips: the first block's output barely changes between steps.
    for model in (theirs, ours):
        model.enable_cache(FirstBlockCacheConfig(threshold=0.5))
    cached = denoise(ours, family)
    assert_same_outputs(cached, denoise(theirs, family))
    assert torch.equal(cached[0], plain[0])
    assert any(relative_error(c, p) > 1e-3 for c, p in zip(cached[1:], plain[1:], strict=True))
    ours.disable_cache()
    assert_same_outputs(denoise(ours, family), plain)


# ---------------------------------------------------------------------------------------------------
# Learned positions (5b-I2V) at other frame counts
# ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sample_frames", "frames"),
    [
        (9, 2),  # diffusers' I2V pipeline tests: 8 frames, 2 latent frames
        (9, 5),
        (9, 3),  # the sample size: the checkpoint's table
        (11, 3),  # sample_frames not 4k+1: diffusers never adds the checkpoint's table
    ],
)
def test_learned_positions_at_any_frame_count_match_diffusers(sample_frames, frames):
    theirs, ours = pair(
        "cogvideox",
        use_rotary_positional_embeddings=True,
        use_learned_positional_embeddings=True,
        sample_frames=sample_frames,
    )
    with torch.no_grad():
        theirs.patch_embed.pos_embedding.normal_()  # as loaded from a checkpoint: not sin-cos
        ours.patch_embed.pos_embedding.copy_(theirs.patch_embed.pos_embedding)
    inputs = step_inputs("cogvideox", 0, frames=frames)
    inputs["image_rotary_emb"] = ours.rotary_embedding(frames, 8, 12)
    with torch.no_grad():
        assert relative_error(ours(**inputs).sample, theirs(**inputs).sample) <= FP32_TOLERANCE
