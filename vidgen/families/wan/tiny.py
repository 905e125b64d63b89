"""A tiny random-weight Wan 2.1 text-to-video pipeline (UMT5, Wan VAE, UniPC flow sampler)."""

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

WAN_VARIANTS = ("t2v",)


def build_tiny_wan(folder: str | Path, variant: str = "t2v", seed: int = 0) -> Path:
    """Write a tiny Wan 2.1 text-to-video folder in diffusers' format; returns it."""
    import diffusers
    from transformers import UMT5Config, UMT5EncoderModel

    if variant not in WAN_VARIANTS:
        raise ValueError(f"no tiny Wan variant {variant!r} (there is {', '.join(WAN_VARIANTS)})")
    components = {
        "tokenizer": lambda: build_tokenizer(model_max_length=512),
        "text_encoder": lambda: UMT5EncoderModel(UMT5Config(**t5_config())),
        "transformer": lambda: diffusers.WanTransformer3DModel(**WAN_TRANSFORMER),
        "vae": lambda: diffusers.AutoencoderKLWan(**WAN_VAE),
        "scheduler": lambda: diffusers.UniPCMultistepScheduler(**WAN_SCHEDULER),
    }
    return write_pipeline(Path(folder), "WanPipeline", components, {}, seed)
