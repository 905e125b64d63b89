"""What a Wan 2.1 text-to-video folder's configs say about the requests it can serve."""

from pathlib import Path

from vidgen.core.errors import VidgenError
from vidgen.core.model_info import REPAIR, ModelInfo, read_json, value


def read_wan_info(folder: Path) -> ModelInfo:
    index = read_json(folder / "model_index.json")
    transformer_path, vae_path = folder / "transformer" / "config.json", folder / "vae" / "config.json"
    transformer, vae = read_json(transformer_path), read_json(vae_path)
    patch = value(transformer, "patch_size", transformer_path, list)
    if not patch or not isinstance(patch[-1], int) or isinstance(patch[-1], bool):
        raise VidgenError(f"'{transformer_path}': patch_size is {patch!r}, not a list of numbers", REPAIR)
    return ModelInfo(
        family="wan",
        pipeline=index["_class_name"],
        architecture="wan2.1-t2v",
        modes=("t2v",),
        spatial_scale=value(vae, "scale_factor_spatial", vae_path),
        temporal_scale=value(vae, "scale_factor_temporal", vae_path),
        patch_size=patch[-1],
        patch_size_t=None,  # the Wan VAE's causal first frame: 4k+1 frames decode to 4k+1
        sample_size=(480, 832, 81),  # the released 2.1 T2V models' size
        fixed_size=False,
        max_text_tokens=512,  # UMT5's length in training, as diffusers' WanPipeline defaults
        attention_heads=value(transformer, "num_attention_heads", transformer_path)
        if "num_attention_heads" in transformer
        else 0,
        tile_pixels=256 * 256,  # diffusers' Wan VAE tile
        text_in_sequence=False,  # cross-attention: the text is not in the attention sequence
        vae_fp32=True,
        guidance_batched=False,  # the pipeline runs the conditional, then the unconditional branch
    )
