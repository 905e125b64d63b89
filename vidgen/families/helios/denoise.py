"""Denoising one Helios chunk: single-stage (Helios-Base) or pyramid (Helios-Mid, Helios-Distilled).

Latents are [B, C, F, H, W] throughout and stay float32 between steps; the transformer gets them in
its own dtype. The schedulers are diffusers' (`HeliosScheduler`, `HeliosDMDScheduler`).
"""

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from vidgen.families.helios import pyramid
from vidgen.families.helios.history import HistoryInputs
from vidgen.runtime.levers import reset_step_cache, step_cache_context


@dataclass(frozen=True)
class Conditioning:
    """Text embeddings for one chunk: [B, L, D] each, in the transformer's dtype."""

    prompt: torch.Tensor
    negative: torch.Tensor | None = None
    # Per-branch (prompt, negative) caches for vidgen's transformer, which reuses the rotary table and
    # text keys/values between steps; None for a transformer without one (diffusers').
    caches: tuple[object | None, object | None] = (None, None)


@dataclass(frozen=True)
class Guidance:
    """Classifier-free guidance, optionally CFG-Zero* (Helios-Mid)."""

    scale: float = 1.0
    cfg_zero_star: bool = False
    # CFG-Zero* zero-init: the first steps of the first pyramid stage predict zero. diffusers zeroes
    # steps 0..zero_steps inclusive, one more than the name says; we keep that.
    zero_init_steps: int | None = None

    @property
    def enabled(self) -> bool:
        return self.scale > 1.0

    def zeroes(self, stage: int, step: int) -> bool:
        """Whether CFG-Zero* replaces this step's prediction with zeros."""
        return (
            self.enabled
            and self.cfg_zero_star
            and self.zero_init_steps is not None
            and stage == 0
            and step <= self.zero_init_steps
        )


def predict(
    transformer: torch.nn.Module,
    latents: torch.Tensor,
    timestep: torch.Tensor,
    text: torch.Tensor,
    history: HistoryInputs,
    cache: object | None = None,
    branch: str = "cond",
) -> torch.Tensor:
    """One transformer call: flow prediction [B, C, F, H, W] for `latents` given text and history.

    `branch` ("cond" or "uncond") names the guidance branch, whose step-cache state is its own.
    """
    dtype = transformer.dtype
    extra = {} if cache is None else {"cache": cache}
    with step_cache_context(transformer, branch):
        return transformer(
            hidden_states=latents.to(dtype),
            timestep=timestep,
            encoder_hidden_states=text,
            **history.as_kwargs(dtype),
            return_dict=False,
            **extra,
        )[0]


def guided_prediction(
    transformer: torch.nn.Module,
    latents: torch.Tensor,
    timestep: torch.Tensor,
    conditioning: Conditioning,
    history: HistoryInputs,
    guidance: Guidance,
    zero: bool = False,
) -> torch.Tensor:
    """The prediction after guidance: plain CFG, CFG-Zero*, or the conditional one alone."""
    cond_cache, uncond_cache = conditioning.caches
    cond = predict(transformer, latents, timestep, conditioning.prompt, history, cond_cache)
    if not guidance.enabled:
        return cond
    if zero:
        # diffusers multiplies (keeping NaNs and signed zeros); the unconditional pass is not needed.
        return cond * 0.0
    uncond = predict(transformer, latents, timestep, conditioning.negative, history, uncond_cache, "uncond")
    if guidance.cfg_zero_star:
        return cfg_zero_star(cond, uncond, guidance.scale)
    return uncond + guidance.scale * (cond - uncond)


def cfg_zero_star(cond: torch.Tensor, uncond: torch.Tensor, scale: float) -> torch.Tensor:
    """CFG-Zero*: scale the unconditional prediction by its optimal projection s* onto the conditional.

    s* = <cond, uncond> / |uncond|², per sample, in float32.
    """
    batch = cond.shape[0]
    flat_cond = cond.reshape(batch, -1).float()  # reshape: the output may be non-contiguous
    flat_uncond = uncond.reshape(batch, -1).float()
    dot = torch.sum(flat_cond * flat_uncond, dim=1, keepdim=True)
    norm = torch.sum(flat_uncond**2, dim=1, keepdim=True) + 1e-8
    s_star = (dot / norm).view(batch, *([1] * (cond.ndim - 1))).to(cond.dtype)
    return uncond * s_star + scale * (cond - uncond * s_star)


def shift_mu(image_seq_len: int, config) -> float:
    """Dynamic-shifting mu for a token count: linear from 0.5 at 256 tokens to 1.15 at 4096 (Flux)."""
    base_len, max_len = config.get("base_image_seq_len", 256), config.get("max_image_seq_len", 4096)
    base_shift, max_shift = config.get("base_shift", 0.5), config.get("max_shift", 1.15)
    slope = (max_shift - base_shift) / (max_len - base_len)
    return image_seq_len * slope + (base_shift - slope * base_len)


def token_count(latents: torch.Tensor, patch_size: tuple[int, int, int]) -> int:
    """Transformer tokens for latents [B, C, F, H, W] with (pt, ph, pw) patches."""
    frames, height, width = latents.shape[2:]
    return (frames * height * width) // (patch_size[0] * patch_size[1] * patch_size[2])


def denoise_single_stage(
    transformer: torch.nn.Module,
    scheduler,
    noise: torch.Tensor,
    conditioning: Conditioning,
    history: HistoryInputs,
    guidance: Guidance,
    steps: int,
    generator: torch.Generator,
    on_step: Callable[[], None] = lambda: None,
) -> torch.Tensor:
    """Helios-Base: `steps` UniPC steps from pure noise [B, C, F, H, W] to clean latents, same shape."""
    mu = shift_mu(token_count(noise, transformer.config.patch_size), scheduler.config)
    # The pipeline's own schedule (not the scheduler's default): sigmas 0.999 -> 0, float64.
    sigmas = np.linspace(0.999, 0.0, steps + 1)[:-1]
    scheduler.set_timesteps(steps, device=noise.device, sigmas=sigmas, mu=mu)
    reset_step_cache(transformer, scheduler.timesteps)  # a step cache starts with this loop
    latents = noise
    for t in scheduler.timesteps:
        timestep = t.expand(latents.shape[0])
        prediction = guided_prediction(transformer, latents, timestep, conditioning, history, guidance)
        latents = scheduler.step(prediction, t, latents, generator=generator, return_dict=False)[0]
        on_step()
    return latents


def denoise_pyramid(
    transformer: torch.nn.Module,
    scheduler,
    noise: torch.Tensor,
    conditioning: Conditioning,
    history: HistoryInputs,
    guidance: Guidance,
    stage_steps: tuple[int, ...],
    generator: torch.Generator,
    distilled: bool = False,
    amplify: bool = False,
    on_step: Callable[[], None] = lambda: None,
) -> torch.Tensor:
    """Helios-Mid / -Distilled: denoise at 1/4 scale, then 1/2, then full; [B, C, F, H, W] in and out.

    `amplify` (the first chunk of a distilled model) makes the DMD scheduler take twice the steps.
    """
    patch_size = transformer.config.patch_size
    latents = pyramid.downsample_noise(noise, len(stage_steps))
    for stage, steps in enumerate(stage_steps):
        # diffusers sizes mu before upsampling, i.e. from the previous stage's token count; kept.
        mu = shift_mu(token_count(latents, patch_size), scheduler.config)
        scheduler.set_timesteps(steps, stage, device=noise.device, mu=mu, is_amplify_first_chunk=amplify)
        if stage > 0:
            latents = renoised(
                pyramid.upsample(latents), scheduler, stage, patch_size, generator, transformer
            )
        start = latents  # the DMD scheduler renoises towards this stage's starting point
        timesteps = scheduler.timesteps
        # A step cache compares steps of one stage: its size changes here.
        reset_step_cache(transformer, timesteps)
        # The DMD scheduler turns the step's timestep and the next one into tensors with `torch.full`,
        # which reads a device tensor back to the host (a wait for the GPU) twice a step; given the
        # stage's values as Python floats, read once here, it fills the same values without waiting.
        # HeliosScheduler (Mid) looks its timestep up in its own tensor and keeps getting the tensor.
        values = timesteps.tolist() if distilled else None
        for step, t in enumerate(timesteps):
            # The pyramid pipeline truncates timesteps to integers; the single-stage one does not.
            timestep = t.expand(latents.shape[0]).to(torch.int64)
            zero = guidance.zeroes(stage, step)
            prediction = guided_prediction(
                transformer, latents, timestep, conditioning, history, guidance, zero
            )
            if distilled:
                extra = _dmd_step_kwargs(scheduler, step, start, values)
                t = values[step]
            else:
                extra = {}
            latents = scheduler.step(prediction, t, latents, generator=generator, return_dict=False, **extra)[
                0
            ]
            on_step()
    return latents


def renoised(
    latents: torch.Tensor,
    scheduler,
    stage: int,
    patch_size: tuple[int, int, int],
    generator: torch.Generator,
    transformer: torch.nn.Module,
) -> torch.Tensor:
    """Upsampled latents [B, C, F, H, W] mixed with block noise to this stage's starting noise level."""
    gamma = scheduler.config.gamma
    alpha, beta = pyramid.renoise_coefficients(scheduler.ori_start_sigmas[stage], gamma)
    noise = pyramid.sample_block_noise(tuple(latents.shape), patch_size[1:], gamma, generator, latents.device)
    # The noise is rounded to the transformer's dtype before mixing, as diffusers does.
    return alpha * latents + beta * noise.to(transformer.dtype)


def _dmd_step_kwargs(scheduler, step: int, start: torch.Tensor, timesteps: list[float]) -> dict:
    return dict(
        cur_sampling_step=step,
        dmd_noisy_tensor=start,
        dmd_sigmas=scheduler.sigmas,
        dmd_timesteps=scheduler.timesteps,
        all_timesteps=timesteps,
    )


def pyramid_step_count(stage_steps: tuple[int, ...], amplify: bool) -> int:
    """Transformer steps one pyramid chunk takes (the DMD scheduler doubles them when amplified)."""
    return sum(stage_steps) * (2 if amplify else 1)
