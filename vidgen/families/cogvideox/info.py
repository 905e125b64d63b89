"""What a CogVideoX folder's configs say about the requests it can serve."""

from pathlib import Path

from vidgen.core.model_info import ModelInfo, read_json


def cogvideox_architecture(transformer: dict) -> str:
    """Which released model a CogVideoX transformer config is shaped like (the presets' `architecture`)."""
    if transformer.get("patch_size_t") is not None:
        return "cogvideox1.5"
    if transformer.get("use_learned_positional_embeddings"):
        return "cogvideox-learned"
    if transformer.get("use_rotary_positional_embeddings"):
        return "cogvideox-rotary"
    return "cogvideox-sincos"


def read_cogvideox_info(folder: Path) -> ModelInfo:
    pipeline = read_json(folder / "model_index.json")["_class_name"]
    transformer = read_json(folder / "transformer" / "config.json")
    vae = read_json(folder / "vae" / "config.json")
    spatial_scale = 2 ** (len(vae["block_out_channels"]) - 1)  # as diffusers' pipelines compute it
    # Image-to-video models take the image latents on the channel axis beside the noise.
    image_conditioned = transformer["in_channels"] == 2 * transformer["out_channels"]
    return ModelInfo(
        family="cogvideox",
        pipeline=pipeline,
        architecture=cogvideox_architecture(transformer),
        modes=("i2v",) if image_conditioned else ("t2v", "v2v"),
        spatial_scale=spatial_scale,
        temporal_scale=vae["temporal_compression_ratio"],
        patch_size=transformer["patch_size"],
        patch_size_t=transformer.get("patch_size_t"),
        sample_size=(
            transformer["sample_height"] * spatial_scale,
            transformer["sample_width"] * spatial_scale,
            transformer["sample_frames"],
        ),
        fixed_size=bool(transformer.get("use_learned_positional_embeddings")),
        max_text_tokens=transformer["max_text_seq_length"],
        attention_heads=transformer.get("num_attention_heads", 0),
    )
