"""CogVideoX text-, image- and video-to-video, composed from the stages: text -> denoise -> decode.

For a given model folder, request and seed the frames equal those of diffusers' CogVideoXPipeline,
CogVideoXImageToVideoPipeline and CogVideoXVideoToVideoPipeline with
`generator=torch.Generator("cpu").manual_seed(seed)`: the random draws happen in the same order and
shapes (VAE posterior sample first for I2V/V2V, then the initial noise, then the DPM solver's noise per
step). Latents are [B, F, C, H, W] throughout, as CogVideoX's transformer takes them.
"""

from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from diffusers import AutoencoderKLCogVideoX, CogVideoXDDIMScheduler, CogVideoXDPMScheduler
from diffusers.utils.torch_utils import randn_tensor
from torch import nn

from vidgen.core.errors import VidgenError
from vidgen.core.progress import Progress, Silent
from vidgen.core.request import Request, Result, Runtime
from vidgen.families.cogvideox.denoise import Conditioning, Guidance, denoise
from vidgen.families.cogvideox.model import CogVideoXTransformer3DModel, rotary_embedding
from vidgen.families.parts import load_parts
from vidgen.runtime.levers import compile_stage, reset_step_cache
from vidgen.runtime.parallel import outcome_speaker
from vidgen.stages import vae as vae_stage
from vidgen.stages.text import TextCache, encode_prompts, truncation_warning
from vidgen.stages.timing import timed_stage
from vidgen.weights import loading

SCHEDULERS = {cls.__name__: cls for cls in (CogVideoXDDIMScheduler, CogVideoXDPMScheduler)}

# What the 1.5 I2V pipeline passes as `ofs` (the authors' fixed value).
OFS = 2.0


@dataclass
class CogVideoX:
    """A loaded CogVideoX model folder: its parts, each where `runtime.offload` put it."""

    folder: Path
    tokenizer: object
    text_encoder: nn.Module
    transformer: CogVideoXTransformer3DModel
    vae: AutoencoderKLCogVideoX
    scheduler: CogVideoXDDIMScheduler | CogVideoXDPMScheduler  # a template: each run gets a fresh copy
    park: str | torch.device = "cpu"  # where stage models wait off the device (tests use "meta")

    @property
    def temporal_compression(self) -> int:
        return self.vae.config.temporal_compression_ratio

    @property
    def spatial_compression(self) -> int:
        return 2 ** (len(self.vae.config.block_out_channels) - 1)


def load(folder: Path, runtime: Runtime) -> CogVideoX:
    """Load every part of a diffusers-format CogVideoX folder (safetensors only) for `runtime`."""
    folder = Path(folder)
    loading.model_index(folder)  # a clear error for a folder that is not a model
    parts = load_parts(
        folder, runtime, CogVideoXTransformer3DModel, AutoencoderKLCogVideoX, runtime.dtype, SCHEDULERS
    )
    return CogVideoX(**parts)


@torch.no_grad()
def generate(
    model: CogVideoX,
    request: Request,
    runtime: Runtime,
    progress: Progress = Silent(),
    text_cache: TextCache | None = None,
) -> Result:
    """Generate one video for a validated request; returns uint8 frames [F, H, W, 3] and stage timings."""
    result = Result(frames=np.zeros((0, request.height, request.width, 3), np.uint8))
    generator = torch.Generator("cpu").manual_seed(request.seed)
    reset_step_cache(model.transformer)  # nothing cached from an earlier video
    progress = compile_stage(progress, model.transformer)

    with timed_stage("text", progress, result, runtime):
        text = _text_embeddings(model, request, runtime, text_cache, result.warnings)

    scheduler = _scheduler(model, request)
    timesteps = _timesteps(scheduler, request, runtime)
    with nullcontext() if request.mode == "t2v" else timed_stage("encode", progress, result, runtime):
        start = _start(model, scheduler, request, runtime, timesteps, generator)

    conditioning = _conditioning(model, text, start, runtime)
    guidance = Guidance(request.guidance, request.dynamic_cfg, steps=len(timesteps))
    with (
        timed_stage("denoise", progress, result, runtime, total=len(timesteps)),
        loading.on_device(model.transformer, runtime, model.park),
    ):
        latents = denoise(
            model.transformer,
            scheduler,
            start.latents,
            timesteps,
            conditioning,
            guidance,
            generator,
            on_step=lambda done: progress.advance(1),
        )

    if not outcome_speaker():  # under torchrun rank 0 alone decodes (every rank holds the same latents)
        return result
    with timed_stage("decode", progress, result, runtime):
        # The 1.5 pipelines drop the padding from the front although it was noise like the rest:
        # done the same way so that frames stay equal.
        frames = _decode(model, latents[:, start.padding :], runtime)
    result.frames = vae_stage.to_uint8(frames)
    return result


@dataclass(frozen=True)
class Start:
    """Where denoising starts."""

    latents: torch.Tensor  # [1, F, C, h, w], noise (T2V, I2V) or the noised video (V2V)
    image: torch.Tensor | None = None  # I2V: [1, F, C, h, w], the image latent then zero latents
    padding: int = 0  # leading latent frames to drop after denoising (CogVideoX 1.5)


def _text_embeddings(
    model: CogVideoX,
    request: Request,
    runtime: Runtime,
    cache: TextCache | None,
    warnings: list[str],
) -> torch.Tensor:
    """[1 or 2, L, D] on the device: [negative, positive] under guidance, else [positive]."""
    prompts = {"prompt": request.prompt}
    if Guidance(request.guidance).enabled:
        prompts = {"negative prompt": request.negative_prompt, **prompts}
    encodings = encode_prompts(
        list(prompts.values()),
        model.tokenizer,
        model.text_encoder,
        request.max_sequence_length,
        runtime,
        cache,
        model_key=str(model.folder.resolve()),
        park=model.park,
    )
    for label, encoding in zip(prompts, encodings, strict=True):
        warning = truncation_warning(label, encoding)
        if warning:
            warnings.append(warning)
    embeds = torch.cat([encoding.embeds for encoding in encodings])
    return embeds.to(device=runtime.device, dtype=runtime.dtype)


def _scheduler(model: CogVideoX, request: Request) -> CogVideoXDDIMScheduler | CogVideoXDPMScheduler:
    """A fresh scheduler for this run (they keep per-run state): the folder's, with the request's overrides.

    An override of "_class_name" swaps the class, as the authors' examples swap DDIM for DPM; the
    other keys replace config values (e.g. timestep_spacing "trailing").
    """
    overrides = dict(request.scheduler)
    name = overrides.pop("_class_name", type(model.scheduler).__name__)
    if name not in SCHEDULERS:
        raise VidgenError(
            f"scheduler {name!r} does not run CogVideoX here",
            hint=f"use one of {', '.join(sorted(SCHEDULERS))}",
        )
    return SCHEDULERS[name].from_config(model.scheduler.config, **overrides)


def _timesteps(scheduler, request: Request, runtime: Runtime) -> torch.Tensor:
    """The timesteps to run: all of them, or for V2V the last `strength` fraction."""
    scheduler.set_timesteps(request.steps, device=runtime.device)
    if request.mode != "v2v":
        return scheduler.timesteps
    kept = min(int(request.steps * request.strength), request.steps)
    if kept == 0:
        raise VidgenError(
            f"strength {request.strength} with {request.steps} steps leaves no denoising step",
            hint="raise --strength or --steps so that steps x strength is at least 1",
        )
    return scheduler.timesteps[(request.steps - kept) * scheduler.order :]


def _start(
    model: CogVideoX,
    scheduler,
    request: Request,
    runtime: Runtime,
    timesteps: torch.Tensor,
    generator: torch.Generator,
) -> Start:
    """The starting latents for the request's mode.

    I2V and V2V sample the VAE posterior before drawing the noise: the same order as diffusers, so
    that both consume the seeded generator alike.
    """
    frames, padding = _latent_frames(model, request)
    channels = model.transformer.config.in_channels
    if request.mode == "t2v":
        noise = _noise(model, request, runtime, frames, channels, generator)
        return Start(noise * scheduler.init_noise_sigma, padding=padding)
    if request.mode == "i2v":
        image = _image_latents(model, request, runtime, frames, generator)
        noise = _noise(model, request, runtime, frames, channels // 2, generator)  # half: image latents
        return Start(noise * scheduler.init_noise_sigma, image, padding)
    if request.mode == "v2v":
        video = _video_latents(model, request, runtime, generator)
        noise = _noise(model, request, runtime, frames, channels, generator)
        noisy = scheduler.add_noise(video, noise, timesteps[:1])  # noised to the first kept timestep
        return Start(noisy * scheduler.init_noise_sigma)
    raise ValueError(f"unknown mode {request.mode!r}")


def _conditioning(model: CogVideoX, text: torch.Tensor, start: Start, runtime: Runtime) -> Conditioning:
    """Everything the transformer takes besides the latents and the timestep."""
    config = model.transformer.config
    return Conditioning(
        text=text,
        image=start.image,
        ofs=start.latents.new_full((1,), OFS) if config.ofs_embed_dim else None,
        rotary=_rotary(model.transformer, start.latents, runtime.device),
    )


def _latent_frames(model: CogVideoX, request: Request) -> tuple[int, int]:
    """(latent frames to denoise, how many of them are padding).

    CogVideoX 1.5 patches latents two frames at a time, so an odd count is padded up. V2V cannot
    pad (its latents come from the video), so there an odd count is the user's to fix.
    """
    frames = request.video.shape[0] if request.mode == "v2v" else request.frames
    latent_frames = (frames - 1) // model.temporal_compression + 1
    patch_t = model.transformer.config.patch_size_t or 1
    padding = -latent_frames % patch_t
    if padding and request.mode == "v2v":
        raise VidgenError(
            f"this model needs an even number of latent frames for video-to-video; {frames} input "
            f"frames give {latent_frames}",
            hint=f"cut the input to {frames - model.temporal_compression} frames",
        )
    return latent_frames + padding, padding


def _noise(
    model: CogVideoX,
    request: Request,
    runtime: Runtime,
    frames: int,
    channels: int,
    generator: torch.Generator,
) -> torch.Tensor:
    """Gaussian noise [1, frames, channels, h, w], drawn on the CPU generator whatever the device."""
    scale = model.spatial_compression
    shape = (1, frames, channels, request.height // scale, request.width // scale)
    return randn_tensor(shape, generator=generator, device=torch.device(runtime.device), dtype=runtime.dtype)


def _image_latents(
    model: CogVideoX, request: Request, runtime: Runtime, frames: int, generator: torch.Generator
) -> torch.Tensor:
    """I2V conditioning [1, frames, C, h, w]: the image's latent frame, then zero latents."""
    vae = model.vae
    pixels = vae_stage.image_pixels(
        request.image, vae_stage.video_processor(vae), request.height, request.width
    )
    with loading.on_device(vae, runtime, model.park):
        latents = vae_stage.encode(vae, pixels.to(runtime.device, runtime.dtype), generator)
    latents = latents.to(runtime.dtype)  # [1, 1, C, h, w]
    # CogVideoX 1.5's VAE config sets invert_scale_latents: its I2V model was trained on image latents
    # divided by the scaling factor rather than multiplied.
    factor = vae.config.scaling_factor
    latents = latents * (1 / factor) if vae.config.invert_scale_latents else latents * factor
    padding = latents.new_zeros((1, frames - 1, *latents.shape[2:]))
    return torch.cat([latents, padding], dim=1)


def _video_latents(
    model: CogVideoX, request: Request, runtime: Runtime, generator: torch.Generator
) -> torch.Tensor:
    """V2V start [1, F, C, h, w]: the input video's scaled latents (no invert_scale_latents, as diffusers)."""
    vae = model.vae
    pixels = vae_stage.video_pixels(
        request.video, vae_stage.video_processor(vae), request.height, request.width
    )
    with loading.on_device(vae, runtime, model.park):
        latents = vae_stage.encode(vae, pixels.to(runtime.device, runtime.dtype), generator)
    return latents.to(runtime.dtype) * vae.config.scaling_factor


def _rotary(
    transformer: nn.Module, latents: torch.Tensor, device: str
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Rotary tables for the latent grid, computed once for all steps; None for sin-cos models.

    Made from the config alone, so any CogVideoX transformer (tests swap in diffusers') gets them.
    """
    if not transformer.config.use_rotary_positional_embeddings:
        return None
    _, frames, _, height, width = latents.shape
    return rotary_embedding(transformer.config, frames, height, width, device=device)


def _decode(model: CogVideoX, latents: torch.Tensor, runtime: Runtime) -> np.ndarray:
    """[1, F, C, h, w] latents -> float32 frames [F', H, W, 3] in [0, 1]."""
    vae = model.vae
    vae_stage.set_tiling(vae, runtime.vae_tiling)
    with loading.on_device(vae, runtime, model.park):
        return vae_stage.decode(vae, latents, vae_stage.video_processor(vae))
