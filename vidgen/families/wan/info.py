"""What a Wan 2.1 folder's configs say about the requests it can serve: a WanPipeline folder makes text-
and video-to-video, a WanImageToVideoPipeline folder image-to-video."""

from pathlib import Path

from vidgen.core.errors import VidgenError
from vidgen.core.model_info import REPAIR, ModelInfo, read_json, value

IMAGE_TO_VIDEO = "WanImageToVideoPipeline"


def read_wan_info(folder: Path) -> ModelInfo:
    index = read_json(folder / "model_index.json")
    transformer_path, vae_path = folder / "transformer" / "config.json", folder / "vae" / "config.json"
    transformer, vae = read_json(transformer_path), read_json(vae_path)
    patch = value(transformer, "patch_size", transformer_path, list)
    if not patch or not isinstance(patch[-1], int) or isinstance(patch[-1], bool):
        raise VidgenError(f"'{transformer_path}': patch_size is {patch!r}, not a list of numbers", REPAIR)
    image = index["_class_name"] == IMAGE_TO_VIDEO
    architecture, last_image = ("wan2.1-t2v", "never")
    if image:
        architecture, last_image = _image_conditioning(folder, index, transformer)
    return ModelInfo(
        family="wan",
        pipeline=index["_class_name"],
        architecture=architecture,
        modes=("i2v",) if image else ("t2v", "v2v"),
        spatial_scale=value(vae, "scale_factor_spatial", vae_path),
        temporal_scale=value(vae, "scale_factor_temporal", vae_path),
        patch_size=patch[-1],
        patch_size_t=None,  # the Wan VAE's causal first frame: 4k+1 frames decode to 4k+1
        sample_size=(480, 832, 81),  # the released 2.1 T2V and I2V-480P models' size
        fixed_size=False,
        max_text_tokens=512,  # UMT5's length in training, as diffusers' WanPipeline defaults
        attention_heads=value(transformer, "num_attention_heads", transformer_path)
        if "num_attention_heads" in transformer
        else 0,
        tile_pixels=256 * 256,  # diffusers' Wan VAE tile
        text_in_sequence=False,  # cross-attention: the text is not in the attention sequence
        vae_fp32=True,
        last_image=last_image,
    )


def _image_conditioning(folder: Path, index: dict, transformer: dict) -> tuple[str, str]:
    """(architecture, last_image) of an image-to-video folder.

    Wan 2.1 I2V embeds the first frame with CLIP (`image_dim`); the first-last-frame model (FLF2V) adds
    position embeddings over two images' tokens (`pos_embed_seq_len`), so it needs both, and the I2V
    models take exactly one (diffusers' pipeline fails on a second).
    """
    if transformer.get("image_dim") is None:
        raise VidgenError(
            f"'{folder}' is a Wan image-to-video folder without image embeddings (Wan 2.2), which vidgen "
            "does not run yet",
            "use a Wan 2.1 image-to-video model, e.g. tiny-wan-i2v",
        )
    encoder = index.get("image_encoder")
    if not isinstance(encoder, list) or len(encoder) != 2 or encoder[1] is None:
        raise VidgenError(
            f"'{folder / 'model_index.json'}' names no image_encoder, which a Wan 2.1 image-to-video "
            "model needs to embed the image",
            REPAIR,
        )
    if transformer.get("pos_embed_seq_len") is not None:
        return "wan2.1-flf2v", "required"
    return "wan2.1-i2v", "never"
