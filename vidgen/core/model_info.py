"""What a model folder's JSON configs say about the requests it can serve, read without any weights.

Everything the CLI checks before loading (modes, sizes, frame counts) comes from here, so a wrong size
is a one-line error in a second, not a crash deep in the transformer after minutes of loading.
"""

import json
from dataclasses import dataclass
from pathlib import Path

from vidgen.core.errors import VidgenError


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
    # What the memory estimates need beyond sizes. The decoder's tile with --vae-tiling, in pixels.
    tile_pixels: int = 240 * 360
    # Latent frames one transformer call sees, and the most held at once; 0: the whole video (CogVideoX).
    # Helios: a chunk and its compressed history.
    call_latent_frames: float = 0
    held_latent_frames: int = 0
    text_in_sequence: bool = True  # the text tokens share the attention sequence (CogVideoX)
    vae_fp32: bool = False  # the VAE always runs in fp32, whatever --dtype (Wan's VAE in Helios)

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
