"""The released models' shapes for tests: transformer config switches, and ModelInfo for estimating
memory without any model folder."""

from dataclasses import replace

from vidgen.core.model_info import ModelInfo
from vidgen.families.helios.info import CHUNK_LATENT_FRAMES, HISTORY_LATENT_FRAMES, LATENT_WINDOW

COGVIDEOX = ModelInfo(
    family="cogvideox",
    pipeline="CogVideoXPipeline",
    architecture="cogvideox-rotary",
    modes=("t2v",),
    spatial_scale=8,
    temporal_scale=4,
    patch_size=2,
    patch_size_t=None,
    sample_size=(480, 720, 49),
    fixed_size=False,
    max_text_tokens=226,
)
HELIOS = replace(
    COGVIDEOX,
    family="helios",
    pipeline="HeliosPipeline",
    architecture="helios-base",
    sample_size=(384, 640, 33),
    max_text_tokens=512,
    # What read_helios_info says of every Helios folder (the memory estimates read it).
    tile_pixels=256 * 256,
    call_latent_frames=CHUNK_LATENT_FRAMES + HISTORY_LATENT_FRAMES,
    held_latent_frames=LATENT_WINDOW,
    text_in_sequence=False,
    vae_fp32=True,
)
HELIOS_DISTILLED = replace(
    HELIOS, pipeline="HeliosPyramidPipeline", architecture="helios-distilled", pyramid_stages=3
)


def cogvideox_info(config) -> ModelInfo:
    """The ModelInfo of a CogVideoX transformer config (its patches and sample size)."""
    return replace(
        COGVIDEOX,
        patch_size=config.patch_size,
        patch_size_t=config.patch_size_t,
        sample_size=(config.sample_height * 8, config.sample_width * 8, config.sample_frames),
    )


# The released transformer/config.json values that differ from the constructor defaults (from copies
# of the hub configs; 1.5's 300x300 sample size as diffusers' conversion script writes it).
RELEASED = {
    "2b": dict(),
    "5b": dict(num_attention_heads=48, num_layers=42, use_rotary_positional_embeddings=True),
    "5b-i2v": dict(
        num_attention_heads=48,
        num_layers=42,
        in_channels=32,
        use_rotary_positional_embeddings=True,
        use_learned_positional_embeddings=True,
    ),
    "1.5-5b": dict(
        num_attention_heads=48,
        num_layers=42,
        use_rotary_positional_embeddings=True,
        patch_size_t=2,
        patch_bias=False,
        sample_height=300,
        sample_width=300,
        sample_frames=81,
    ),
    "1.5-5b-i2v": dict(
        num_attention_heads=48,
        num_layers=42,
        in_channels=32,
        ofs_embed_dim=512,
        use_rotary_positional_embeddings=True,
        patch_size_t=2,
        patch_bias=False,
        sample_height=300,
        sample_width=300,
        sample_frames=81,
    ),
}
