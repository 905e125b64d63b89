"""Tiny random-weight Helios pipelines: Base, Mid and Distilled shapes (UMT5, Wan VAE)."""

from pathlib import Path

from vidgen.weights.tiny import TEXT_DIM, WAN_VAE, build_tokenizer, t5_config, write_pipeline

HELIOS_TRANSFORMER = dict(
    patch_size=(1, 2, 2),
    num_attention_heads=2,
    attention_head_dim=12,
    in_channels=16,
    out_channels=16,
    text_dim=TEXT_DIM,
    freq_dim=32,
    ffn_dim=32,
    num_layers=2,
    rope_dim=(4, 4, 4),
)
HELIOS_VAE = WAN_VAE  # Helios decodes with Wan 2.1's VAE

HELIOS_VARIANTS: dict[str, dict] = {
    "base": dict(
        pipeline="HeliosPipeline",
        scheduler=("HeliosScheduler", dict(stages=1, stage_range=[0, 1], use_dynamic_shifting=True)),
        config={},
    ),
    # Like Helios-Mid: pyramid sampling with the UniPC HeliosScheduler (3 stages, exponential dynamic
    # shifting, as the authors' stage-2 validation config builds it) and CFG-Zero*.
    "mid": dict(
        pipeline="HeliosPyramidPipeline",
        scheduler=("HeliosScheduler", dict(use_dynamic_shifting=True, time_shift_type="exponential")),
        config={"is_distilled": False, "is_cfg_zero_star": True},
    ),
    "distilled": dict(
        pipeline="HeliosPyramidPipeline",
        scheduler=("HeliosDMDScheduler", {}),
        config={"is_distilled": True, "is_cfg_zero_star": False},
    ),
}


def build_tiny_helios(folder: str | Path, variant: str = "base", seed: int = 0) -> Path:
    """Write a tiny Helios pipeline folder (UMT5 text encoder, Wan VAE); returns it."""
    import diffusers
    from transformers import UMT5Config, UMT5EncoderModel

    spec = HELIOS_VARIANTS[variant]
    scheduler_name, scheduler_config = spec["scheduler"]
    components = {
        "tokenizer": lambda: build_tokenizer(model_max_length=512),
        "text_encoder": lambda: UMT5EncoderModel(UMT5Config(**t5_config())),
        "transformer": lambda: diffusers.HeliosTransformer3DModel(**HELIOS_TRANSFORMER),
        "vae": lambda: diffusers.AutoencoderKLWan(**HELIOS_VAE),
        "scheduler": lambda: getattr(diffusers, scheduler_name)(**scheduler_config),
    }
    return write_pipeline(Path(folder), spec["pipeline"], components, spec["config"], seed)
