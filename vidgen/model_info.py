"""What a model folder's JSON configs say about the requests it can serve, read without any weights.

Everything the CLI checks before loading (modes, sizes, frame counts) comes from here, so a wrong size
is a one-line error in a second, not a crash deep in the transformer after minutes of loading.
"""

import json
from dataclasses import dataclass
from pathlib import Path

from vidgen.errors import VidgenError, article

# model_index.json `_class_name` prefixes -> family.
FAMILIES = {"CogVideoX": "cogvideox", "Helios": "helios"}


@dataclass(frozen=True)
class ModelInfo:
    family: str
    pipeline: str  # model_index.json `_class_name`
    architecture: str  # see `cogvideox_architecture`; matched against presets
    modes: tuple[str, ...]
    spatial_scale: int  # pixels per latent cell (VAE)
    temporal_scale: int  # video frames per latent frame (VAE)
    patch_size: int
    patch_size_t: int | None  # CogVideoX 1.5 patches 2 latent frames together
    sample_size: tuple[int, int, int]  # height, width (pixels) and frames the model was trained at
    fixed_size: bool  # learned positions: only `sample_size` works
    max_text_tokens: int
    # Helios-Mid/Distilled sample coarse to fine: each stage before the last halves the latent grid.
    pyramid_stages: int = 1
    attention_heads: int = 0  # the transformer's; context parallelism splits them (0: not read)

    @property
    def size_multiple(self) -> int:
        """Height and width must be multiples of this: one transformer patch in pixels, at the coarsest
        pyramid stage (64 for three stages: the latent grid halves twice and still holds 2x2 patches)."""
        return self.spatial_scale * self.patch_size * 2 ** (self.pyramid_stages - 1)

    def latent_frames(self, frames: int) -> int:
        return (frames - 1) // self.temporal_scale + 1

    def decoded_frames(self, latent_frames: int) -> int:
        """How many frames the VAE decodes `latent_frames` to.

        diffusers' AutoencoderKLCogVideoX decodes latents two at a time (num_latent_frames_batch_size),
        keeping a lone first latent frame as one frame only when the count is odd: an even count comes
        out as 4 frames per latent, e.g. 13 requested frames (4 latents) would come back as 16.
        """
        if latent_frames % 2:
            return (latent_frames - 1) * self.temporal_scale + 1
        return latent_frames * self.temporal_scale

    @property
    def max_size(self) -> tuple[int, int] | None:
        """The largest height and width, where the model has one (1.5's slice rotary grid)."""
        # diffusers builds 1.5's rotary table on a grid of the sample size and slices it, so a larger
        # latent grid than the sample has no positions.
        return self.sample_size[:2] if self.patch_size_t is not None else None


def read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise VidgenError(
            f"'{path}' is missing: not a complete diffusers-format model folder",
            "pass a folder saved with diffusers' save_pretrained, or a preset name (see `vidgen models`)",
        ) from None
    except (OSError, ValueError) as error:
        raise VidgenError(f"cannot read '{path}': {error}", "check the file or download it again") from None


def detect_family(folder: Path) -> str:
    """ "cogvideox" or "helios", from model_index.json's pipeline class."""
    pipeline = read_json(folder / "model_index.json").get("_class_name", "")
    for prefix, family in FAMILIES.items():
        if pipeline.startswith(prefix):
            return family
    pipeline = pipeline or "unnamed"
    raise VidgenError(
        f"'{folder}' holds {article(pipeline)} {pipeline} pipeline, not CogVideoX or Helios",
        "pass a CogVideoX or Helios folder, or a preset name (see `vidgen models`)",
    )


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


def helios_architecture(index: dict) -> str:
    """Which released Helios a model_index.json describes (the presets' `architecture`)."""
    if index["_class_name"] != "HeliosPyramidPipeline":
        return "helios-base"
    return "helios-distilled" if index.get("is_distilled") else "helios-mid"


def read_helios_info(folder: Path) -> ModelInfo:
    index = read_json(folder / "model_index.json")
    transformer = read_json(folder / "transformer" / "config.json")
    vae = read_json(folder / "vae" / "config.json")
    scheduler = read_json(folder / "scheduler" / "scheduler_config.json")
    pyramid = index["_class_name"] == "HeliosPyramidPipeline"
    return ModelInfo(
        family="helios",
        pipeline=index["_class_name"],
        architecture=helios_architecture(index),
        # One model does all three: an image or a video only seeds the latent history.
        modes=("t2v", "i2v", "v2v"),
        spatial_scale=vae["scale_factor_spatial"],
        temporal_scale=vae["scale_factor_temporal"],
        patch_size=transformer["patch_size"][-1],
        patch_size_t=None,
        sample_size=(384, 640, 33),  # the authors' size; 33 frames is one chunk
        fixed_size=False,
        max_text_tokens=512,  # UMT5's length in training; diffusers' Helios default (CogVideoX: 226)
        pyramid_stages=scheduler.get("stages", 1) if pyramid else 1,
        attention_heads=transformer.get("num_attention_heads", 0),
    )
