"""Tiny random-weight Wan pipelines (UMT5, Wan VAE, UniPC flow sampler): Wan 2.1 text-to-video, image-to-
video with a tiny CLIP image encoder (one image, or a first and a last), Wan 2.2 A14B's two experts
(text- and image-to-video), and Wan 2.2 TI2V-5B's 48 latent channels with the Wan 2.2 VAE."""

import json
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
# The released A14B folders' switch: `transformer` (high noise) below this share of the training
# timesteps' range gives way to `transformer_2` (low noise).
A14B_BOUNDARY = 0.875
I2V_A14B_BOUNDARY = 0.9

# CLIP ViT-H, tiny: 32x32 pixels in 8x8 patches, so 17 hidden states (16 patches and the class token).
CLIP_VISION = dict(
    hidden_size=16,
    intermediate_size=32,
    num_hidden_layers=2,  # the pipeline takes the last-but-one layer's hidden states
    num_attention_heads=2,
    image_size=32,
    patch_size=8,
)
CLIP_TOKENS = (32 // 8) ** 2 + 1
CLIP_PROCESSOR = dict(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
# Image-to-video: 16 noise + 4 mask + 16 image-latent channels in.
I2V_CHANNELS = dict(in_channels=36)
# Wan 2.1's: the CLIP states in an extra cross-attention (image_dim: CLIP's width; added_kv_proj_dim:
# the transformer's, as released).
WAN_I2V_TRANSFORMER = dict(
    WAN_TRANSFORMER,
    **I2V_CHANNELS,
    image_dim=CLIP_VISION["hidden_size"],
    added_kv_proj_dim=WAN_TRANSFORMER["num_attention_heads"] * WAN_TRANSFORMER["attention_head_dim"],
)

# variant -> its pipeline class, transformer config, VAE, and model_index.json's extra entries; "experts":
# a transformer_2 like the first; "clip": an image encoder and processor.
WAN_VARIANTS: dict[str, dict] = {
    "t2v": dict(pipeline="WanPipeline", transformer=WAN_TRANSFORMER),
    # Wan 2.2 A14B: two experts (different weights) and `boundary_ratio`.
    "t2v-a14b": dict(
        pipeline="WanPipeline",
        transformer=WAN_TRANSFORMER,
        experts=True,
        extra={"boundary_ratio": A14B_BOUNDARY, "expand_timesteps": False},
    ),
    # Wan 2.2 TI2V-5B: 48 channels, the Wan 2.2 VAE, a timestep per token; no second expert.
    "ti2v": dict(
        pipeline="WanPipeline",
        transformer={**WAN_TRANSFORMER, "in_channels": 48, "out_channels": 48},
        vae=WAN22_VAE,
        extra={"boundary_ratio": None, "expand_timesteps": True, "transformer_2": [None, None]},
    ),
    "i2v": dict(pipeline="WanImageToVideoPipeline", transformer=WAN_I2V_TRANSFORMER, clip=True),
    # Like Wan2.1-FLF2V-14B-720P: position embeddings over the first and the last image's CLIP states.
    "flf2v": dict(
        pipeline="WanImageToVideoPipeline",
        transformer=dict(WAN_I2V_TRANSFORMER, pos_embed_seq_len=2 * CLIP_TOKENS),
        clip=True,
    ),
    # Wan 2.2 I2V A14B: two experts taking the image in the latents alone, no image encoder.
    "i2v-a14b": dict(
        pipeline="WanImageToVideoPipeline",
        transformer={**WAN_TRANSFORMER, **I2V_CHANNELS},
        experts=True,
        extra={
            "boundary_ratio": I2V_A14B_BOUNDARY,
            "expand_timesteps": False,
            "image_encoder": [None, None],
            "image_processor": [None, None],
        },
    ),
}


def build_tiny_wan(folder: str | Path, variant: str = "t2v", seed: int = 0) -> Path:
    """Write a tiny Wan folder of `variant` (see WAN_VARIANTS) in diffusers' format; returns it."""
    import diffusers
    from transformers import UMT5Config, UMT5EncoderModel

    if variant not in WAN_VARIANTS:
        raise ValueError(f"no tiny Wan variant {variant!r} (there is {', '.join(WAN_VARIANTS)})")
    spec = WAN_VARIANTS[variant]
    components = {
        "tokenizer": lambda: build_tokenizer(model_max_length=512),
        "text_encoder": lambda: UMT5EncoderModel(UMT5Config(**t5_config())),
        "transformer": lambda: diffusers.WanTransformer3DModel(**spec["transformer"]),
        "vae": lambda: diffusers.AutoencoderKLWan(**spec.get("vae", WAN_VAE)),
        "scheduler": lambda: diffusers.UniPCMultistepScheduler(**WAN_SCHEDULER),
    }
    # Added after the others, so that each keeps its weights (each part's seed is its position).
    if spec.get("experts"):
        components["transformer_2"] = lambda: diffusers.WanTransformer3DModel(**spec["transformer"])
    if spec.get("clip"):
        components.update(image_encoder=_clip_vision, image_processor=_clip_processor)
    write_pipeline(Path(folder), spec["pipeline"], components, spec.get("extra", {}), seed)
    if spec.get("clip"):
        _name_processor_as_released(Path(folder))
    return Path(folder)


def _clip_vision():
    from transformers import CLIPVisionConfig, CLIPVisionModel

    return CLIPVisionModel(CLIPVisionConfig(**CLIP_VISION))


def _clip_processor():
    from transformers import CLIPImageProcessor

    return CLIPImageProcessor(**CLIP_PROCESSOR)


def _name_processor_as_released(folder: Path) -> None:
    """model_index.json names the processor CLIPImageProcessor, as the released folders do: without
    torchvision transformers builds its PIL-backed subclass, whose own name the index would get."""
    path = folder / "model_index.json"
    index = json.loads(path.read_text())
    index["image_processor"] = ["transformers", "CLIPImageProcessor"]
    path.write_text(json.dumps(index, indent=2) + "\n")
