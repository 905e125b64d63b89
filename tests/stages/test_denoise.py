"""The denoising loop and guidance, with a stand-in transformer that records what it is given."""

import math

import pytest
import torch
from diffusers import CogVideoXDDIMScheduler, CogVideoXDPMScheduler

from vidgen.families.cogvideox.denoise import Conditioning, Guidance, denoise


class RecordingTransformer(torch.nn.Module):
    """Predicts 0.1 * its input latents (a real denoiser's shape), remembering each call's arguments."""

    def __init__(self, out_channels: int) -> None:
        super().__init__()
        self.out_channels = out_channels
        self.calls: list[dict] = []

    def forward(self, hidden_states, encoder_hidden_states, timestep, ofs=None, image_rotary_emb=None, **_):
        self.calls.append(dict(shape=tuple(hidden_states.shape), timestep=timestep.tolist(), ofs=ofs))
        return (0.1 * hidden_states[:, :, : self.out_channels],)


def run(scheduler, guidance: Guidance, image: torch.Tensor | None = None, steps: int = 3):
    scheduler.set_timesteps(steps)
    latents = torch.randn(1, 2, 4, 2, 3, generator=torch.Generator().manual_seed(0))
    text = torch.zeros(2 if guidance.enabled else 1, 5, 8)
    transformer = RecordingTransformer(out_channels=4)
    done = []
    result = denoise(
        transformer,
        scheduler,
        latents,
        scheduler.timesteps,
        Conditioning(text=text, image=image),
        guidance,
        torch.Generator().manual_seed(1),
        on_step=done.append,
    )
    return result, transformer.calls, done


def test_each_timestep_runs_once_with_a_callback_per_step():
    scheduler = CogVideoXDDIMScheduler()
    result, calls, done = run(scheduler, Guidance(6.0))
    assert done == [1, 2, 3]
    assert [call["timestep"] for call in calls] == [[int(t)] * 2 for t in scheduler.timesteps]
    assert result.shape == (1, 2, 4, 2, 3) and result.isfinite().all()


def test_guidance_doubles_the_batch_only_above_scale_one():
    _, guided, _ = run(CogVideoXDDIMScheduler(), Guidance(6.0))
    _, unguided, _ = run(CogVideoXDDIMScheduler(), Guidance(1.0))
    assert guided[0]["shape"][0] == 2 and unguided[0]["shape"][0] == 1


def test_image_latents_join_the_latents_on_the_channel_axis():
    image = torch.ones(1, 2, 4, 2, 3)
    _, calls, _ = run(CogVideoXDPMScheduler(), Guidance(6.0), image=image)
    assert calls[0]["shape"] == (2, 2, 8, 2, 3)  # [B, F, C_latent + C_image, H, W]


def test_dpm_solver_draws_from_the_generator_each_step():
    first, _, _ = run(CogVideoXDPMScheduler(), Guidance(6.0))
    again, _, _ = run(CogVideoXDPMScheduler(), Guidance(6.0))
    assert torch.equal(first, again)  # seeded: the same stream gives the same result


@pytest.mark.parametrize("t", [999, 500, 40, 1])
def test_dynamic_guidance_follows_diffusers_ramp_on_the_timestep_value(t):
    steps, scale = 50, 6.0
    # diffusers' CogVideoX pipelines, written out: the timestep value, not the step index.
    expected = 1 + scale * ((1 - math.cos(math.pi * ((steps - t) / steps) ** 5.0)) / 2)
    assert Guidance(scale, dynamic=True, steps=steps).scale_at(t) == expected
    assert Guidance(scale, dynamic=False, steps=steps).scale_at(t) == scale
