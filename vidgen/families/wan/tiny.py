"""Tiny random-weight Wan 2.1 pipelines: text-to-video (UMT5, Wan VAE, UniPC flow sampler), and
image-to-video with a tiny CLIP image encoder, one image (I2V) or a first and a last (FLF2V)."""

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
# Image-to-video: 16 noise + 4 mask + 16 image-latent channels in; the CLIP states in an extra
# cross-attention (image_dim: CLIP's width; added_kv_proj_dim: the transformer's, as released).
WAN_I2V_TRANSFORMER = dict(
    WAN_TRANSFORMER,
    in_channels=36,
    image_dim=CLIP_VISION["hidden_size"],
    added_kv_proj_dim=WAN_TRANSFORMER["num_attention_heads"] * WAN_TRANSFORMER["attention_head_dim"],
)

WAN_VARIANTS = {
    "t2v": dict(pipeline="WanPipeline", transformer=WAN_TRANSFORMER),
    "i2v": dict(pipeline="WanImageToVideoPipeline", transformer=WAN_I2V_TRANSFORMER),
    # Like Wan2.1-FLF2V-14B-720P: position embeddings over the first and the last image's CLIP states.
    "flf2v": dict(
        pipeline="WanImageToVideoPipeline",
        transformer=dict(WAN_I2V_TRANSFORMER, pos_embed_seq_len=2 * CLIP_TOKENS),
    ),
}


def build_tiny_wan(folder: str | Path, variant: str = "t2v", seed: int = 0) -> Path:
    """Write a tiny Wan 2.1 folder of `variant` in diffusers' format; returns it."""
    import diffusers
    from transformers import UMT5Config, UMT5EncoderModel

    if variant not in WAN_VARIANTS:
        raise ValueError(f"no tiny Wan variant {variant!r} (there is {', '.join(WAN_VARIANTS)})")
    spec = WAN_VARIANTS[variant]
    components = {
        "tokenizer": lambda: build_tokenizer(model_max_length=512),
        "text_encoder": lambda: UMT5EncoderModel(UMT5Config(**t5_config())),
        "transformer": lambda: diffusers.WanTransformer3DModel(**spec["transformer"]),
        "vae": lambda: diffusers.AutoencoderKLWan(**WAN_VAE),
        "scheduler": lambda: diffusers.UniPCMultistepScheduler(**WAN_SCHEDULER),
    }
    image = spec["pipeline"] == "WanImageToVideoPipeline"
    if image:
        components.update(image_encoder=_clip_vision, image_processor=_clip_processor)
    write_pipeline(Path(folder), spec["pipeline"], components, {}, seed)
    if image:
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
