"""Tiny random-weight CogVideoX pipelines: one per released variant's shape."""

from pathlib import Path

from vidgen.weights.tiny import TEXT_DIM, build_tokenizer, t5_config, write_pipeline

COGVIDEOX_VARIANTS: dict[str, dict] = {
    # Like CogVideoX-2b: 3-D sin-cos positions.
    "t2v": dict(
        pipeline="CogVideoXPipeline",
        scheduler="CogVideoXDDIMScheduler",
        transformer=dict(
            use_rotary_positional_embeddings=False,
            spatial_interpolation_scale=1.875,
        ),
    ),
    # Like CogVideoX-5b: 3-D rotary positions.
    "rotary-t2v": dict(
        pipeline="CogVideoXPipeline",
        scheduler="CogVideoXDDIMScheduler",
        transformer=dict(use_rotary_positional_embeddings=True),
    ),
    # Like CogVideoX-5b-I2V: rotary and learned positions, image latents on the channel axis.
    "i2v": dict(
        pipeline="CogVideoXImageToVideoPipeline",
        scheduler="CogVideoXDPMScheduler",
        transformer=dict(
            in_channels=8,
            use_rotary_positional_embeddings=True,
            use_learned_positional_embeddings=True,
        ),
    ),
    # Like CogVideoX1.5-5B: rotary, temporal patches of 2, no patch bias.
    "1.5-t2v": dict(
        pipeline="CogVideoXPipeline",
        scheduler="CogVideoXDPMScheduler",
        transformer=dict(use_rotary_positional_embeddings=True, patch_size_t=2, patch_bias=False),
    ),
    # Like CogVideoX1.5-5B-I2V: as 1.5 plus the ofs embedding.
    "1.5-i2v": dict(
        pipeline="CogVideoXImageToVideoPipeline",
        scheduler="CogVideoXDPMScheduler",
        transformer=dict(
            in_channels=8,
            use_rotary_positional_embeddings=True,
            patch_size_t=2,
            patch_bias=False,
            ofs_embed_dim=16,
        ),
    ),
}

# The size a tiny CogVideoX model is "trained" at: 96x64 pixels (width x height), 9 frames (3 latent
# frames of 12x8).
COGVIDEOX_SAMPLE = dict(sample_height=8, sample_width=12, sample_frames=9)
# Every tiny model's parts; the variants above change the transformer's (bench/suite_models.py builds
# its CPU smoke models from these too).
COGVIDEOX_TRANSFORMER = dict(
    num_attention_heads=2,
    attention_head_dim=16,
    in_channels=4,
    out_channels=4,
    time_embed_dim=16,
    text_embed_dim=TEXT_DIM,
    num_layers=2,
    max_text_seq_length=226,
    **COGVIDEOX_SAMPLE,
)
COGVIDEOX_VAE = dict(
    down_block_types=("CogVideoXDownBlock3D",) * 4,
    up_block_types=("CogVideoXUpBlock3D",) * 4,
    block_out_channels=(8, 8, 8, 8),
    latent_channels=4,
    layers_per_block=1,
    norm_num_groups=2,
    temporal_compression_ratio=4,
)


def build_tiny_cogvideox(folder: str | Path, variant: str = "t2v", seed: int = 0) -> Path:
    """Write a tiny CogVideoX pipeline folder that diffusers and vidgen both load; returns it."""
    import diffusers
    from transformers import T5Config, T5EncoderModel

    spec = COGVIDEOX_VARIANTS[variant]
    transformer_config = {**COGVIDEOX_TRANSFORMER, **spec["transformer"]}
    components = {
        "tokenizer": lambda: build_tokenizer(model_max_length=226),
        "text_encoder": lambda: T5EncoderModel(T5Config(**t5_config())),
        "transformer": lambda: diffusers.CogVideoXTransformer3DModel(**transformer_config),
        "vae": lambda: diffusers.AutoencoderKLCogVideoX(**COGVIDEOX_VAE),
        "scheduler": lambda: getattr(diffusers, spec["scheduler"])(),
    }
    return write_pipeline(Path(folder), spec["pipeline"], components, {}, seed)
