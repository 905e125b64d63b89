"""What to generate and how to run it: the two frozen values every stage downstream trusts.

The CLI (or `vidgen batch`) builds and validates them in one place, before any model loads; pipelines
and stages read them and never second-guess them.
"""

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from vidgen.core import choices

DTYPES = dict(zip(choices.DTYPES, (torch.float32, torch.float16, torch.bfloat16), strict=True))
HALF_DTYPES = (torch.float16, torch.bfloat16)


def dtype_name(dtype: torch.dtype) -> str:
    return next(name for name, value in DTYPES.items() if value == dtype)


@dataclass(frozen=True)
class ParallelPlan:
    """How the world's ranks share one video: cfg x ring x ulysses = world size."""

    world_size: int = 1
    cfg: int = 1  # 2: the guidance branches run on different rank groups
    ulysses: int = 1  # all-to-all over attention heads
    ring: int = 1  # key/value passed around the ring
    # Some token count does not divide by `sequence`: diffusers' "anything" mode gives ranks slices of
    # different sizes (one all-gather of the sizes more per exchange).
    uneven: bool = False

    @property
    def sequence(self) -> int:
        """Ranks that share one branch's tokens."""
        return self.ulysses * self.ring

    def describe(self) -> str:
        parts = [
            f"{n}-way {name}"
            for name, n in (("cfg", self.cfg), ("ulysses", self.ulysses), ("ring", self.ring))
            if n > 1
        ]
        return " x ".join(parts) or "single process"

    def as_json(self) -> dict[str, int]:
        return {"world_size": self.world_size, "cfg": self.cfg, "ulysses": self.ulysses, "ring": self.ring}


SINGLE = ParallelPlan()


@dataclass(frozen=True)
class Request:
    """One video to generate, validated: sizes fit the model, media already read."""

    mode: str  # "t2v" | "i2v" | "v2v"
    prompt: str
    negative_prompt: str = ""
    seed: int = 0
    steps: int = 50
    guidance: float = 6.0
    # The second expert's guidance (Wan 2.2 A14B's low-noise transformer); None for a one-expert model.
    guidance_2: float | None = None
    dynamic_cfg: bool = False
    height: int = 480
    width: int = 720
    frames: int = 49
    fps: int = 8
    # i2v: the conditioning image, uint8 [H, W, 3] as read from disk (the pipeline resizes it).
    image: np.ndarray | None = field(default=None, compare=False, repr=False)
    # i2v with --last-image: the video's last frame, uint8 [H, W, 3] as read (Wan's first-last-frame).
    last_image: np.ndarray | None = field(default=None, compare=False, repr=False)
    # v2v: the input frames, uint8 [F, H, W, 3], already cut to `frames`.
    video: np.ndarray | None = field(default=None, compare=False, repr=False)
    strength: float = 0.8
    max_sequence_length: int = 226
    # Overrides of the model folder's scheduler config as sorted (key, value) pairs, from a preset: e.g.
    # (("_class_name", "CogVideoXDPMScheduler"), ("timestep_spacing", "trailing")) as the 5b authors
    # sample. Empty keeps the folder's scheduler as it is.
    scheduler: tuple[tuple[str, Any], ...] = ()
    # A family's sampling options beyond these fields, as sorted (name, value) pairs; for Helios, fields
    # of `HeliosSettings` (pyramid_steps, amplify_first_chunk). Empty for CogVideoX.
    settings: tuple[tuple[str, Any], ...] = ()


@dataclass(frozen=True)
class Lora:
    """A LoRA adapter to fuse into the transformer (`--lora`), found and checked against the model."""

    source: str  # the path or hub repo as given
    path: str  # the safetensors file it resolved to
    scale: float = 1.0
    sha256: str = ""
    # Which expert of a two-expert model takes it ("high" or "low", as `--lora high=PATH` names it);
    # "" for every transformer the model has.
    expert: str = ""


@dataclass(frozen=True)
class Runtime:
    """Where and how the models run; independent of what is generated."""

    device: str = "cpu"
    dtype: torch.dtype = torch.float32
    # "none" | "model" | "group" | "sequential"; "auto" until `vidgen.runtime.memory.auto.settle` picks one
    offload: str = "none"
    # None: the memory plan decides (auto offload without --vae-tiling/--no-vae-tiling)
    vae_tiling: bool | None = False
    quantize: str = "none"  # "none" | "fp8" | "int8" | "fp8-storage" (vidgen.runtime.memory.quantize)
    plan: str = ""  # why this offload plan, when the planner chose it
    transformer_bytes: int | None = None  # the loaded transformer's weight bytes, once it is loaded
    keep_models: bool = False  # keep each stage's model on the device after its work, whatever the offload
    attention: str = "sdpa"  # a name of runtime.attention.ATTENTION_BACKENDS, already checked to run here
    compile: bool = False  # torch.compile each repeated transformer block
    cache: str = "none"  # "none" | "first-block" | "mag" | "taylorseer": diffusers' step caching
    # The step cache's threshold (first-block, mag); None: the cache's default. 0 skips nothing.
    cache_threshold: float | None = None
    # The mag cache's magnitude ratios from the preset (`mag_ratios`); empty: measured per model.
    mag_ratios: tuple[float, ...] = ()
    # --mag-ratios: "measure" (no stored ratios) or a ratios file, instead of the shared store; None: it.
    mag_source: str | None = None
    # LoRAs fused into the transformer's weights as it loads (vidgen.runtime.lora), in the order given.
    loras: tuple[Lora, ...] = ()

    @property
    def parks_models(self) -> bool:
        """Whether a stage's model leaves the device once its stage is done: under model offload (and
        group offload's VAE), unless `keep_models`. With no offload every model stays resident;
        offload hooks ("group" blocks, "sequential") move their own weights."""
        return self.offload in ("model", "group") and not self.keep_models

    # How torchrun's ranks share this video (vidgen.runtime.parallel); one process: SINGLE.
    parallel: ParallelPlan = SINGLE


@dataclass
class Result:
    """What a pipeline returns: the frames, and what the sidecar and the user should know."""

    frames: np.ndarray  # uint8 [F, H, W, 3]
    timings: dict[str, float] = field(default_factory=dict)  # stage name -> seconds
    warnings: list[str] = field(default_factory=list)  # one line each, shown to the user
