"""What a Wan folder's configs say about the requests it can serve. WanPipeline folders: Wan 2.1
(text- and video-to-video), Wan 2.2 A14B (two experts: `transformer_2` and `boundary_ratio` in
model_index.json) and TI2V-5B (48 latent channels, the 16x Wan 2.2 VAE, `expand_timesteps`: text- and
image-to-video). WanImageToVideoPipeline folders: Wan 2.1 I2V and first-last-frame (CLIP image
embeddings), Wan 2.2 I2V A14B (two experts, the image in the latents alone)."""

from pathlib import Path

from vidgen.core.errors import VidgenError
from vidgen.core.model_info import REPAIR, ModelInfo, read_json, value

IMAGE_TO_VIDEO = "WanImageToVideoPipeline"

# architecture -> the height, width and frames its released models were trained at.
SAMPLE_SIZES = {
    "wan2.1-t2v": (480, 832, 81),
    "wan2.1-i2v": (480, 832, 81),
    "wan2.1-flf2v": (720, 1280, 81),
    "wan2.2-t2v-a14b": (720, 1280, 81),
    "wan2.2-i2v-a14b": (720, 1280, 81),
    "wan2.2-ti2v-5b": (704, 1280, 121),
}
# architecture -> the modes its folders run, as diffusers' pipelines run them: WanVideoToVideoPipeline
# knows neither a second expert nor a timestep per token, so only Wan 2.1's text folders take a video;
# WanImageToVideoPipeline runs TI2V-5B's text folder as image-to-video.
MODES = {
    "wan2.1-t2v": ("t2v", "v2v"),
    "wan2.2-t2v-a14b": ("t2v",),
    "wan2.2-ti2v-5b": ("t2v", "i2v"),
}


def read_wan_info(folder: Path) -> ModelInfo:
    index_path = folder / "model_index.json"
    index = read_json(index_path)
    transformer_path, vae_path = folder / "transformer" / "config.json", folder / "vae" / "config.json"
    transformer, vae = read_json(transformer_path), read_json(vae_path)
    patch = value(transformer, "patch_size", transformer_path, list)
    if not patch or not isinstance(patch[-1], int) or isinstance(patch[-1], bool):
        raise VidgenError(f"'{transformer_path}': patch_size is {patch!r}, not a list of numbers", REPAIR)
    experts = expert_count(index, index_path)
    if experts == 2:
        read_json(folder / "transformer_2" / "config.json")  # a missing second expert: one line, now
    if index["_class_name"] == IMAGE_TO_VIDEO:
        architecture, last_image = _image_conditioning(folder, index, transformer, experts)
        modes: tuple[str, ...] = ("i2v",)
    else:
        architecture, last_image = _architecture(index, experts), "never"
        modes = MODES[architecture]
    return ModelInfo(
        family="wan",
        pipeline=index["_class_name"],
        architecture=architecture,
        modes=modes,
        spatial_scale=value(vae, "scale_factor_spatial", vae_path),
        temporal_scale=value(vae, "scale_factor_temporal", vae_path),
        patch_size=patch[-1],
        patch_size_t=None,  # the Wan VAE's causal first frame: 4k+1 frames decode to 4k+1
        sample_size=SAMPLE_SIZES[architecture],
        fixed_size=False,
        max_text_tokens=512,  # UMT5's length in training, as diffusers' WanPipeline defaults
        attention_heads=value(transformer, "num_attention_heads", transformer_path)
        if "num_attention_heads" in transformer
        else 0,
        tile_pixels=256 * 256,  # diffusers' Wan VAE tile
        text_in_sequence=False,  # cross-attention: the text is not in the attention sequence
        vae_fp32=True,
        experts=experts,
        last_image=last_image,
        guidance_batched=False,  # the pipeline runs the conditional, then the unconditional branch
    )


def expert_count(index: dict, path: Path) -> int:
    """2 when model_index.json sets `boundary_ratio` (diffusers' WanPipeline then hands the steps below
    it to `transformer_2`), else 1: without the ratio diffusers never runs a `transformer_2`."""
    ratio = index.get("boundary_ratio")
    if ratio is None:
        return 1
    if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0 < ratio <= 1:
        raise VidgenError(f"'{path}': boundary_ratio is {ratio!r}, not a number in (0, 1]", REPAIR)
    second = index.get("transformer_2")
    if not isinstance(second, list) or len(second) != 2 or second[1] is None:
        raise VidgenError(
            f"'{path}' sets boundary_ratio {ratio} but names no transformer_2 (the low-noise expert)", REPAIR
        )
    return 2


def _architecture(index: dict, experts: int) -> str:
    if experts == 2:
        return "wan2.2-t2v-a14b"
    if index.get("expand_timesteps"):  # a timestep per token: TI2V-5B's way of keeping an image clean
        return "wan2.2-ti2v-5b"
    return "wan2.1-t2v"


def _image_conditioning(folder: Path, index: dict, transformer: dict, experts: int) -> tuple[str, str]:
    """(architecture, last_image) of a WanImageToVideoPipeline folder.

    Wan 2.1 I2V embeds the first frame with CLIP (`image_dim`); the first-last-frame model (FLF2V) adds
    position embeddings over two images' tokens (`pos_embed_seq_len`), so it needs both, and the I2V
    models take exactly one (diffusers' pipeline fails on a second). Wan 2.2 I2V A14B has no image
    embeddings: the last image, if given, goes into the latents alone.
    """
    if transformer.get("image_dim") is None:
        if experts < 2:
            raise VidgenError(
                f"'{folder}' is a Wan image-to-video folder with neither image embeddings (Wan 2.1) nor two "
                "experts (Wan 2.2 A14B), which vidgen does not run",
                REPAIR,
            )
        return "wan2.2-i2v-a14b", "optional"
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
