"""What to generate and how to run it: the two frozen values every stage downstream trusts.

The CLI (or `vidgen batch`) builds and validates them in one place, before any model loads; pipelines
and stages read them and never second-guess them.
"""

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from vidgen.parallel import SINGLE, ParallelPlan


@dataclass(frozen=True)
class Request:
    """One video to generate, validated: sizes fit the model, media already read."""

    mode: str  # "t2v" | "i2v" | "v2v"
    prompt: str
    negative_prompt: str = ""
    seed: int = 0
    steps: int = 50
    guidance: float = 6.0
    dynamic_cfg: bool = False
    height: int = 480
    width: int = 720
    frames: int = 49
    fps: int = 8
    # i2v: the conditioning image, uint8 [H, W, 3] as read from disk (the pipeline resizes it).
    image: np.ndarray | None = field(default=None, compare=False, repr=False)
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


@dataclass(frozen=True)
class Runtime:
    """Where and how the models run; independent of what is generated."""

    device: str = "cpu"
    dtype: torch.dtype = torch.float32
    # "none" | "model" | "group" | "sequential"; "auto" until `vidgen.memory.auto.settle` picks one
    offload: str = "none"
    # None: the memory plan decides (auto offload without --vae-tiling/--no-vae-tiling)
    vae_tiling: bool | None = False
    quantize: str = "none"  # "none" | "fp8" | "int8" | "fp8-storage" (vidgen.memory.quantize)
    plan: str = ""  # why this offload plan, when the planner chose it
    transformer_bytes: int | None = None  # the loaded transformer's weight bytes, once it is loaded
    keep_models: bool = False  # keep each stage's model on the device after its work, whatever the offload
    attention: str = "sdpa"  # a name of validate.runtime.ATTENTION_BACKENDS, already checked to run here
    compile: bool = False  # torch.compile each repeated transformer block
    cache: str = "none"  # "none" | "first-block" | "mag" | "taylorseer": diffusers' step caching
    # The step cache's threshold (first-block, mag); None: the cache's default. 0 skips nothing.
    cache_threshold: float | None = None
    # The mag cache's magnitude ratios from the preset (`mag_ratios`); empty: measured per model.
    mag_ratios: tuple[float, ...] = ()
    # --mag-ratios: "measure" (no stored ratios) or a ratios file, instead of the shared store; None: it.
    mag_source: str | None = None
    # LoRAs fused into the transformer's weights as it loads (vidgen.lora), in the order given.
    loras: tuple[Lora, ...] = ()

    @property
    def parks_models(self) -> bool:
        """Whether a stage's model leaves the device once its stage is done: under model offload (and
        group offload's VAE), unless `keep_models`. With no offload every model stays resident;
        offload hooks ("group" blocks, "sequential") move their own weights."""
        return self.offload in ("model", "group") and not self.keep_models

    # How torchrun's ranks share this video (vidgen.parallel); one process: SINGLE.
    parallel: ParallelPlan = SINGLE


@dataclass
class Result:
    """What a pipeline returns: the frames, and what the sidecar and the user should know."""

    frames: np.ndarray  # uint8 [F, H, W, 3]
    timings: dict[str, float] = field(default_factory=dict)  # stage name -> seconds
    warnings: list[str] = field(default_factory=list)  # one line each, shown to the user
