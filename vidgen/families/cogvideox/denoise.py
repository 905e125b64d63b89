"""The denoising loop: scheduler + transformer + classifier-free guidance, one callback per step."""

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from diffusers import CogVideoXDPMScheduler
from torch import nn

from vidgen.runtime.levers import reset_step_cache, step_cache_context

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
    # The schedule's values, read to the host once before the loop, not once per step: the schedulers
    # index their host-side tables with the timestep and compare it in Python (`prev_timestep >= 0`),
    # and the guidance ramp needs it as a number; given a device tensor each of those waits for the GPU
    # to finish the step. A Python int reads the same table entries, so the frames do not change.
    values = timesteps.tolist()
    reset_step_cache(transformer, values)  # a step cache starts with this loop
    step = scheduler_step(scheduler, values, generator)
    for i, t in enumerate(timesteps):
        noise = predict_noise(transformer, scheduler, latents, t, conditioning, guidance, values[i])
        latents = step(i, values[i], noise, latents).to(conditioning.text.dtype)
        on_step(i + 1)
    return latents


def predict_noise(
    transformer: nn.Module,
    scheduler,
    latents: torch.Tensor,
    t: torch.Tensor,
    conditioning: Conditioning,
    guidance: Guidance,
    t_value: int | float | None = None,
) -> torch.Tensor:
    """The transformer's guided prediction for `latents` at timestep `t`, in float32.

    `t_value` is `t` as a Python number (the dynamic guidance ramp needs it); read from `t` if not given.
    """
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
    if not guidance.dynamic:
        return unconditional + guidance.scale * (conditional - unconditional)
    scale = guidance.scale_at(t.item() if t_value is None else t_value)
    return unconditional + scale * (conditional - unconditional)


def scheduler_step(scheduler, timesteps: list[int], generator: torch.Generator | None) -> Callable:
    """`step(i, t, noise, latents) -> latents` over either CogVideoX scheduler; `timesteps` and `t` are
    Python ints (see `denoise`).

    CogVideoXDPMScheduler is a two-step solver: it takes the previous timestep and carries its last
    x0 prediction from step to step, and draws fresh noise from `generator` at every step; the DDIM
    one (eta 0) draws none. Both get the generator, so the random stream matches the reference.
    """
    if not isinstance(scheduler, CogVideoXDPMScheduler):

        def ddim_step(i: int, t: int, noise: torch.Tensor, latents: torch.Tensor) -> torch.Tensor:
            return scheduler.step(noise, t, latents, eta=0.0, generator=generator, return_dict=False)[0]

        return ddim_step

    previous_x0 = None

    def dpm_step(i: int, t: int, noise: torch.Tensor, latents: torch.Tensor) -> torch.Tensor:
        nonlocal previous_x0
        previous_t = timesteps[i - 1] if i > 0 else None
        latents, previous_x0 = scheduler.step(
            noise, previous_x0, t, previous_t, latents, eta=0.0, generator=generator, return_dict=False
        )
        return latents

    return dpm_step
