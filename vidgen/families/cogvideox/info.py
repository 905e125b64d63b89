"""What a CogVideoX folder's configs say about the requests it can serve."""

from pathlib import Path
from typing import Any

from vidgen.core.model_info import ModelInfo, read_json, value


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
    transformer_path, vae_path = folder / "transformer" / "config.json", folder / "vae" / "config.json"
    transformer, vae = read_json(transformer_path), read_json(vae_path)

    def setting(key: str, kind: type | tuple[type, ...] = int) -> Any:
        return value(transformer, key, transformer_path, kind)

    blocks = value(vae, "block_out_channels", vae_path, list)
    spatial_scale = 2 ** (len(blocks) - 1)  # as diffusers' pipelines compute it
    # Image-to-video models take the image latents on the channel axis beside the noise.
    image_conditioned = setting("in_channels") == 2 * setting("out_channels")
    return ModelInfo(
        family="cogvideox",
        pipeline=pipeline,
        architecture=cogvideox_architecture(transformer),
        modes=("i2v",) if image_conditioned else ("t2v", "v2v"),
        spatial_scale=spatial_scale,
        temporal_scale=value(vae, "temporal_compression_ratio", vae_path),
        patch_size=setting("patch_size"),
        patch_size_t=setting("patch_size_t", (int, type(None))) if "patch_size_t" in transformer else None,
        sample_size=(
            setting("sample_height") * spatial_scale,
            setting("sample_width") * spatial_scale,
            setting("sample_frames"),
        ),
        fixed_size=bool(transformer.get("use_learned_positional_embeddings")),
        max_text_tokens=setting("max_text_seq_length"),
        attention_heads=setting("num_attention_heads") if "num_attention_heads" in transformer else 0,
    )
