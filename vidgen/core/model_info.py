"""What a model folder's JSON configs say about the requests it can serve, read without any weights.

Everything the CLI checks before loading (modes, sizes, frame counts) comes from here, so a wrong size
is a one-line error in a second, not a crash deep in the transformer after minutes of loading.
"""

import inspect
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
    # Transformers that take turns over the steps, each with its own weights (Wan 2.2 A14B: 2, high
    # noise then low); the memory plan holds all of them, the device one at a time.
    experts: int = 1
    # Whether image-to-video takes --last-image (the video's last frame): "never", "optional", or
    # "required" (Wan 2.1's first-last-frame model embeds both images as one sequence).
    last_image: str = "never"
    # The guidance branches run as one batch of two (CogVideoX: cfg parallelism can split them), or one
    # after the other (Wan, Helios), when a transformer call holds one branch's activations at a time.
    guidance_batched: bool = True

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
    """A config file of a model folder: a JSON object, or a one-line error naming the file."""
    try:
        content = json.loads(path.read_text())
    except FileNotFoundError:
        raise VidgenError(
            f"'{path}' is missing: not a complete diffusers-format model folder",
            "pass a folder saved with diffusers' save_pretrained, or a preset name (see `vidgen models`)",
        ) from None
    except RecursionError:  # a JSON file nested thousands deep: nothing a config ever is
        raise VidgenError(f"cannot read '{path}': its JSON is nested too deeply", REPAIR) from None
    except (OSError, ValueError) as error:
        raise VidgenError(f"cannot read '{path}': {error}", REPAIR) from None
    if not isinstance(content, dict):
        raise VidgenError(f"'{path}' holds a JSON {json_kind(content)}, not an object", REPAIR)
    return content


def json_kind(value: object) -> str:
    """What JSON calls a value's type, for messages ("array", not Python's "list")."""
    kinds = {dict: "object", list: "array", str: "string", bool: "boolean", int: "number", float: "number"}
    return "null" if value is None else kinds.get(type(value), type(value).__name__)


REPAIR = "check the file or download it again"


def value(config: dict, key: str, path: Path, kind: type | tuple[type, ...] = int) -> Any:
    """`config[key]`, which must be there and of `kind` (a whole number is not negative, and a bool is
    no number here); else an error naming the file and the key."""
    if key not in config:
        raise VidgenError(f"'{path}' has no {key!r}: not a config vidgen can read", REPAIR)
    found = config[key]
    kinds = kind if isinstance(kind, tuple) else (kind,)
    mistyped = not isinstance(found, kinds) or (isinstance(found, bool) and bool not in kinds)
    if mistyped or (isinstance(found, int) and found < 0):
        raise VidgenError(f"'{path}': {key} is {found!r}, which no model config holds there", REPAIR)
    return found


def transformer_settings(class_name: str, config: Mapping[str, Any]) -> dict[str, Any]:
    """Every constructor argument of diffusers' transformer `class_name`: `config`'s value, else
    diffusers' default (a config saved by an older diffusers lacks the switches added since)."""
    import diffusers

    cls = getattr(diffusers, class_name)
    parameters = inspect.signature(cls.__init__).parameters.values()
    settings = {p.name: p.default for p in parameters if p.default is not inspect.Parameter.empty}
    settings.update((key, config[key]) for key in settings.keys() & config.keys())
    return {key: plain(setting) for key, setting in settings.items()}


def plain(value: Any) -> Any:
    """A config value in one comparable, hashable form: JSON and TOML lists become tuples."""
    return tuple(plain(item) for item in value) if isinstance(value, (list, tuple)) else value
