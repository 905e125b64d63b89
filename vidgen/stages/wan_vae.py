"""The Wan 2.1 VAE (Wan and Helios decode with it): pixels <-> normalised latents, both [B, C, F, H, W].

Latents are normalised per channel with the VAE config's `latents_mean` / `latents_std`. Decoding is
per chunk, exactly as diffusers' Helios pipelines decode (each chunk's latents in one `vae.decode`
call, whose causal cache starts empty), so frames need not wait for the whole video.
"""

import numpy as np
import torch
from diffusers.video_processor import VideoProcessor

from vidgen.stages import vae as vae_stage


def latent_stats(vae: torch.nn.Module, device: torch.device | str) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean, 1/std), each [1, C, 1, 1, 1] in the VAE's dtype, on `device`."""
    config = vae.config
    mean = torch.tensor(config.latents_mean).view(1, config.z_dim, 1, 1, 1).to(device, vae.dtype)
    inv_std = 1.0 / torch.tensor(config.latents_std).view(1, config.z_dim, 1, 1, 1).to(device, vae.dtype)
    return mean, inv_std


def encode(
    vae: torch.nn.Module, pixels: torch.Tensor, generator: torch.Generator, device: torch.device | str
) -> torch.Tensor:
    """Pixels [B, 3, F, H, W] -> normalised latents [B, C, (F-1)/4+1, H/8, W/8], float32.

    The posterior is sampled, not its mean, with `generator`: diffusers draws this noise from the
    same generator as all the rest, so skipping it would shift every later draw.
    """
    mean, inv_std = latent_stats(vae, device)
    posterior = vae.encode(pixels.to(device=device, dtype=vae.dtype)).latent_dist
    noise = torch.randn(posterior.mean.shape, generator=generator, device=generator.device, dtype=vae.dtype)
    latents = posterior.mean + posterior.std * noise.to(posterior.mean.device)
    return ((latents - mean) * inv_std).float()


def encode_mean(vae: torch.nn.Module, pixels: torch.Tensor, device: torch.device | str) -> torch.Tensor:
    """Pixels [B, 3, F, H, W] -> normalised latents of the posterior's mean, float32: what diffusers'
    Wan image- and video-to-video pipelines condition on (they draw no noise for it)."""
    mean, inv_std = latent_stats(vae, device)
    latents = vae.encode(pixels.to(device=device, dtype=vae.dtype)).latent_dist.mode()
    return ((latents - mean) * inv_std).float()


def decode(
    vae: torch.nn.Module,
    latents: torch.Tensor,
    device: torch.device | str,
    stats: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> torch.Tensor:
    """Normalised latents [B, C, F, H, W] -> pixels [B, 3, 4(F-1)+1, 8H, 8W] in about [-1, 1].
    `stats`: `latent_stats` made beforehand (copying them to the GPU here would wait for the stream)."""
    mean, inv_std = stats if stats is not None else latent_stats(vae, device)
    return vae.decode(latents.to(device=device, dtype=vae.dtype) / inv_std + mean, return_dict=False)[0]


def decode_frames(
    vae: torch.nn.Module, latents: torch.Tensor, processor: VideoProcessor, device: torch.device | str
) -> np.ndarray:
    """Normalised latents [1, C, F, H, W] -> uint8 frames [4(F-1)+1, 8H, 8W, 3], as diffusers outputs them."""
    return to_frames(decode(vae, latents, device), processor)


def to_frames(pixels: torch.Tensor, processor: VideoProcessor) -> np.ndarray:
    """Decoded pixels [1, 3, F, H, W] (on any device) -> uint8 frames [F, H, W, 3]."""
    return vae_stage.to_uint8(processor.postprocess_video(pixels, output_type="np")[0])


def video_processor(vae: torch.nn.Module) -> VideoProcessor:
    """Resizing and normalisation for the Wan VAE's 8x spatial factor, as diffusers' Helios pipelines."""
    return VideoProcessor(vae_scale_factor=vae.config.scale_factor_spatial)
