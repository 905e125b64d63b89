"""Tiny random-weight Wan text-to-video pipelines (UMT5, Wan VAE, UniPC flow sampler): Wan 2.1, Wan 2.2
A14B's two experts, and Wan 2.2 TI2V-5B's 48 latent channels with the Wan 2.2 VAE."""

from pathlib import Path

from vidgen.weights.tiny import TEXT_DIM, WAN_VAE, build_tokenizer, t5_config, write_pipeline

WAN_TRANSFORMER = dict(
    patch_size=(1, 2, 2),
    num_attention_heads=2,
    attention_head_dim=12,
    in_channels=16,
    out_channels=16,
    text_dim=TEXT_DIM,
    freq_dim=32,
    ffn_dim=32,
    num_layers=2,
    cross_attn_norm=True,
    qk_norm="rms_norm_across_heads",
    rope_max_seq_len=32,
)
# The released Wan 2.1 T2V folders' sampler: UniPC on flow-matching sigmas, shifted (3.0 for 480p).
WAN_SCHEDULER = dict(prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=3.0)

# Wan 2.2's VAE, tiny: 48 latent channels, a residual encoder and decoder, and a 2x2 pixel patch before
# the 8x convolutions (16x in all). Its latent statistics are uneven, so that a decoder that skipped
# them would show.
WAN22_VAE = dict(
    base_dim=8,
    z_dim=48,
    dim_mult=[1, 1, 1, 1],
    num_res_blocks=1,
    temperal_downsample=[False, True, True],
    is_residual=True,
    in_channels=12,
    out_channels=12,
    patch_size=2,
    scale_factor_spatial=16,
    scale_factor_temporal=4,
    latents_mean=[round(0.1 * (index % 7 - 3), 2) for index in range(48)],
    latents_std=[round(0.8 + 0.1 * (index % 5), 2) for index in range(48)],
)
# The released A14B folder's switch: `transformer` (high noise) below this share of the training
# timesteps' range gives way to `transformer_2` (low noise).
A14B_BOUNDARY = 0.875

WAN_VARIANTS = ("t2v", "t2v-a14b", "ti2v")


def build_tiny_wan(folder: str | Path, variant: str = "t2v", seed: int = 0) -> Path:
    """Write a tiny Wan text-to-video folder of `variant` in diffusers' format; returns it.

    "t2v": Wan 2.1. "t2v-a14b": Wan 2.2's two experts (different weights) and `boundary_ratio` in
    model_index.json. "ti2v": Wan 2.2 TI2V-5B's layout: 48 channels, the Wan 2.2 VAE and
    `expand_timesteps` (a timestep per token)."""
    import diffusers
    from transformers import UMT5Config, UMT5EncoderModel

    if variant not in WAN_VARIANTS:
        raise ValueError(f"no tiny Wan variant {variant!r} (there is {', '.join(WAN_VARIANTS)})")
    transformer = (
        WAN_TRANSFORMER if variant != "ti2v" else {**WAN_TRANSFORMER, "in_channels": 48, "out_channels": 48}
    )
    components = {
        "tokenizer": lambda: build_tokenizer(model_max_length=512),
        "text_encoder": lambda: UMT5EncoderModel(UMT5Config(**t5_config())),
        "transformer": lambda: diffusers.WanTransformer3DModel(**transformer),
        "vae": lambda: diffusers.AutoencoderKLWan(**(WAN22_VAE if variant == "ti2v" else WAN_VAE)),
        "scheduler": lambda: diffusers.UniPCMultistepScheduler(**WAN_SCHEDULER),
    }
    extra: dict = {}
    if variant == "t2v-a14b":
        # Last, so that adding it kept the other parts' weights (each part's seed is its position).
        components["transformer_2"] = lambda: diffusers.WanTransformer3DModel(**transformer)
        extra = {"boundary_ratio": A14B_BOUNDARY, "expand_timesteps": False}
    elif variant == "ti2v":
        # As the released TI2V-5B folder: no second expert, a timestep per token.
        extra = {"boundary_ratio": None, "expand_timesteps": True, "transformer_2": [None, None]}
    return write_pipeline(Path(folder), "WanPipeline", components, extra, seed)
