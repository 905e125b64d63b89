"""Wan video-to-video's start, as diffusers' WanVideoToVideoPipeline makes it from a text-to-video
folder: the input video's latents (the VAE's mean), noised to the first of the last `strength` x steps
timesteps, which are the only ones run."""

import torch
from PIL import Image
from torch import nn

from vidgen.core.request import Request, Runtime
from vidgen.stages import wan_vae
from vidgen.weights import loading


def kept_timesteps(scheduler, request: Request) -> torch.Tensor:
    """The last int(steps x strength) steps' timesteps (the rules made sure there is one)."""
    kept = min(int(request.steps * request.strength), request.steps)
    return scheduler.timesteps[(request.steps - kept) * scheduler.order :]


def noised_video(
    vae: nn.Module,
    scheduler,
    request: Request,
    runtime: Runtime,
    noise: torch.Tensor,
    timesteps: torch.Tensor,
    park: str | torch.device,
) -> torch.Tensor:
    """[1, C, F', h, w] float32: the video's latents, noised with `noise` to `timesteps[0]`."""
    processor = wan_vae.video_processor(vae)
    frames = [Image.fromarray(frame) for frame in request.video]
    pixels = processor.preprocess_video(frames, height=request.height, width=request.width)  # [1, 3, F, H, W]
    with loading.on_device(vae, runtime, park):
        latents = wan_vae.encode_mean(vae, pixels, runtime.device)
    return scheduler.add_noise(latents, noise, timesteps[:1])
