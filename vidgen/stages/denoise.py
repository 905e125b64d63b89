"""The denoising loop: scheduler + transformer + classifier-free guidance, one callback per step."""

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from diffusers import CogVideoXDPMScheduler
from torch import nn

from vidgen.levers import step_cache_context

# Called after each step with the number of steps done so far.
StepCallback = Callable[[int], None]


@dataclass(frozen=True)
class Guidance:
    """Classifier-free guidance: off at scale <= 1, as in the reference pipelines."""

    scale: float
    dynamic: bool = False
    steps: int = 1  # the step count the dynamic ramp is measured against

    @property
    def enabled(self) -> bool:
        return self.scale > 1.0

    def scale_at(self, t: int) -> float:
        """The guidance scale at timestep value `t`."""
        if not self.dynamic:
            return self.scale
        # CogVideoX's cosine ramp, reproduced as diffusers computes it: from the timestep *value*
        # (0..999) against the step count, not from the step index. For t > steps the base is
        # negative; the odd power keeps it real. Python floats, so the scale is bit-identical.
        progress = ((self.steps - t) / self.steps) ** 5.0
        return 1 + self.scale * ((1 - math.cos(math.pi * progress)) / 2)


@dataclass(frozen=True)
class Conditioning:
    """What the transformer sees besides the latents, prepared once for the whole loop."""

    text: torch.Tensor  # [B, L, D]; B = 2 ([negative, positive]) under guidance
    image: torch.Tensor | None = None  # I2V: [1, F, C, H, W] image latents, joined on the channel axis
    ofs: torch.Tensor | None = None  # CogVideoX 1.5 I2V's extra embedding input, [1]
    rotary: tuple[torch.Tensor, torch.Tensor] | None = None  # (cos, sin) tables for rotary models


def denoise(
    transformer: nn.Module,
    scheduler,
    latents: torch.Tensor,
    timesteps: torch.Tensor,
    conditioning: Conditioning,
    guidance: Guidance,
    generator: torch.Generator | None = None,
    on_step: StepCallback = lambda done: None,
) -> torch.Tensor:
    """Run the scheduler from `latents` [1, F, C, H, W] over `timesteps`; returns the denoised latents."""
    step = scheduler_step(scheduler, timesteps, generator)
    for i, t in enumerate(timesteps):
        noise = predict_noise(transformer, scheduler, latents, t, conditioning, guidance)
        latents = step(i, t, noise, latents).to(conditioning.text.dtype)
        on_step(i + 1)
    return latents


def predict_noise(
    transformer: nn.Module,
    scheduler,
    latents: torch.Tensor,
    t: torch.Tensor,
    conditioning: Conditioning,
    guidance: Guidance,
) -> torch.Tensor:
    """The transformer's guided prediction for `latents` at timestep `t`, in float32."""
    copies = 2 if guidance.enabled else 1
    model_input = scheduler.scale_model_input(torch.cat([latents] * copies), t)  # [copies, F, C, H, W]
    if conditioning.image is not None:
        image = torch.cat([conditioning.image] * copies)
        model_input = torch.cat([model_input, image], dim=2)  # [copies, F, 2C, H, W]
    # One call computes both guidance branches (batched), so one step-cache state serves them.
    with step_cache_context(transformer, "cond_uncond" if guidance.enabled else "cond"):
        prediction = transformer(
            hidden_states=model_input,
            encoder_hidden_states=conditioning.text,
            timestep=t.expand(copies),
            ofs=conditioning.ofs,
            image_rotary_emb=conditioning.rotary,
            return_dict=False,
        )[0].float()
    if not guidance.enabled:
        return prediction
    unconditional, conditional = prediction.chunk(2)
    return unconditional + guidance.scale_at(t.item()) * (conditional - unconditional)


def scheduler_step(scheduler, timesteps: torch.Tensor, generator: torch.Generator | None) -> Callable:
    """`step(i, t, noise, latents) -> latents` over either CogVideoX scheduler.

    CogVideoXDPMScheduler is a two-step solver: it takes the previous timestep and carries its last
    x0 prediction from step to step, and draws fresh noise from `generator` at every step; the DDIM
    one (eta 0) draws none. Both get the generator, so the random stream matches the reference.
    """
    if not isinstance(scheduler, CogVideoXDPMScheduler):

        def ddim_step(i: int, t: torch.Tensor, noise: torch.Tensor, latents: torch.Tensor) -> torch.Tensor:
            return scheduler.step(noise, t, latents, eta=0.0, generator=generator, return_dict=False)[0]

        return ddim_step

    previous_x0 = None

    def dpm_step(i: int, t: torch.Tensor, noise: torch.Tensor, latents: torch.Tensor) -> torch.Tensor:
        nonlocal previous_x0
        previous_t = timesteps[i - 1] if i > 0 else None
        latents, previous_x0 = scheduler.step(
            noise, previous_x0, t, previous_t, latents, eta=0.0, generator=generator, return_dict=False
        )
        return latents

    return dpm_step
