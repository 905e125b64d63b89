"""What a Wan text-to-video folder's configs say about the requests it can serve: Wan 2.1, Wan 2.2 A14B
(two experts: `transformer_2` and `boundary_ratio` in model_index.json) and Wan 2.2 TI2V-5B (48 latent
channels, the 16x Wan 2.2 VAE, `expand_timesteps`)."""

from pathlib import Path

from vidgen.core.errors import VidgenError
from vidgen.core.model_info import REPAIR, ModelInfo, read_json, value

# architecture -> the height, width and frames its released models were trained at.
SAMPLE_SIZES = {
    "wan2.1-t2v": (480, 832, 81),
    "wan2.2-t2v-a14b": (720, 1280, 81),
    "wan2.2-ti2v-5b": (704, 1280, 121),
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
    architecture = _architecture(index, experts)
    return ModelInfo(
        family="wan",
        pipeline=index["_class_name"],
        architecture=architecture,
        modes=("t2v",),
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
