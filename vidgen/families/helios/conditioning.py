"""I2V and V2V conditioning for Helios: the input media as latents the history starts from.

Helios has no image channel; it reads the input through its history. An image becomes the first-frame
anchor plus one "fake" history frame (the last latent of the image repeated over a chunk); a video
becomes the anchor (its first frame) plus its chunk-aligned latents. Both are blurred with a little
noise (sigma drawn per image, per video latent frame), which the authors found balances motion
against fidelity to the input.

Generator use follows diffusers exactly: posterior samples for each encode, then for each noised
tensor one `rand` for its sigma(s) followed by one `randn` for its noise.
"""

from dataclasses import dataclass

import numpy as np
import torch
from diffusers.video_processor import VideoProcessor

from vidgen.stages import vae as vae_stage
from vidgen.stages import wan_vae


@dataclass(frozen=True)
class NoiseRanges:
    """Uniform ranges the conditioning noise sigmas are drawn from."""

    image: tuple[float, float] = (0.111, 0.135)  # the image / first-frame anchor
    video: tuple[float, float] = (0.111, 0.135)  # history frames (the fake image frame, video latents)


@dataclass(frozen=True)
class MediaLatents:
    """Latents [B, C, F, H, W] that condition the first chunk."""

    prefix: torch.Tensor  # [B, C, 1, H, W] the first-frame anchor
    history: torch.Tensor  # [B, C, n, H, W] the frames that precede the video, oldest first


def image_latents(
    vae: torch.nn.Module,
    processor: VideoProcessor,
    image: np.ndarray,
    size: tuple[int, int],
    window_frames: int,
    generator: torch.Generator,
    device: torch.device | str,
    noise: NoiseRanges | None,
) -> MediaLatents:
    """uint8 [H0, W0, 3] -> the image latent as anchor, and a fake history frame, at `size` (h, w).

    The fake frame is the last latent of the image repeated over `window_frames` frames: what a still
    video ending on that image looks like to the history. `noise` None keeps the latents clean.
    """
    pixels = vae_stage.image_pixels(image, processor, *size)  # [1, 3, 1, H, W]
    anchor = wan_vae.encode(vae, pixels, generator, device)
    still = wan_vae.encode(vae, pixels.repeat(1, 1, window_frames, 1, 1), generator, device)[:, :, -1:]
    if noise is not None:
        anchor = blurred(anchor, _sigmas(1, noise.image, generator, device), generator)
        still = blurred(still, _sigmas(1, noise.video, generator, device), generator)
    return MediaLatents(prefix=anchor, history=still)


def video_latents(
    vae: torch.nn.Module,
    processor: VideoProcessor,
    video: np.ndarray,
    size: tuple[int, int],
    window_frames: int,
    generator: torch.Generator,
    device: torch.device | str,
    noise: NoiseRanges | None,
) -> MediaLatents:
    """uint8 [F, H0, W0, 3] -> the first frame's latent as anchor, and the video's latents as history.

    Only the last whole windows of `window_frames` frames are encoded, one window per VAE call (each a
    chunk as the model generates them); leftover frames at the start are dropped, as diffusers does.
    """
    pixels = vae_stage.video_pixels(video, processor, *size)  # [1, 3, F, H, W]
    windows = pixels.shape[2] // window_frames
    start = pixels.shape[2] - windows * window_frames
    anchor = wan_vae.encode(vae, pixels[:, :, :1], generator, device)
    chunks = []
    for i in range(windows):
        window = pixels[:, :, start + i * window_frames : start + (i + 1) * window_frames]
        chunks.append(wan_vae.encode(vae, window, generator, device))  # [1, C, chunk, h, w]
    if noise is not None:
        anchor = blurred(anchor, _sigmas(1, noise.image, generator, device), generator)
        chunks = [blurred(c, _frame_sigmas(c, noise.video, generator), generator) for c in chunks]
    return MediaLatents(prefix=anchor, history=torch.cat(chunks, dim=2))


def blurred(latents: torch.Tensor, sigma: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """sigma·noise + (1 − sigma)·latents: a point on the flow path from `latents` towards noise."""
    noise = torch.randn(latents.shape, generator=generator, device=generator.device).to(latents.device)
    return sigma * noise + (1 - sigma) * latents


def _sigmas(count: int, sigma_range: tuple[float, float], generator: torch.Generator, device) -> torch.Tensor:
    low, high = sigma_range
    return (torch.rand(count, generator=generator, device=generator.device) * (high - low) + low).to(device)


def _frame_sigmas(chunk: torch.Tensor, sigma_range: tuple[float, float], generator) -> torch.Tensor:
    """One sigma per latent frame of `chunk` [B, C, F, H, W], shaped [1, 1, F, 1, 1]."""
    frames = chunk.shape[2]
    return _sigmas(frames, sigma_range, generator, chunk.device).view(1, 1, frames, 1, 1)
