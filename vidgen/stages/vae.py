"""Pixels <-> latents with CogVideoX's VAE, and the frame conversions on either side of it.

Images and videos are resized and normalised with diffusers' VideoProcessor, so that vidgen's
inputs to the VAE are the reference pipelines' to the bit.
"""

import numpy as np
import torch
from diffusers.video_processor import VideoProcessor
from PIL import Image
from torch import nn

from vidgen.core.errors import VidgenError


def video_processor(vae: nn.Module) -> VideoProcessor:
    """Resizing/normalisation for this VAE (its spatial factor: 2 per down block after the first)."""
    return VideoProcessor(vae_scale_factor=2 ** (len(vae.config.block_out_channels) - 1))


def image_pixels(image: np.ndarray, processor: VideoProcessor, height: int, width: int) -> torch.Tensor:
    """uint8 [H, W, 3] -> float [1, 3, 1, height, width] in [-1, 1], one frame for the VAE."""
    pixels = processor.preprocess(Image.fromarray(image), height=height, width=width)  # [1, 3, h, w]
    return pixels.unsqueeze(2)


def video_pixels(video: np.ndarray, processor: VideoProcessor, height: int, width: int) -> torch.Tensor:
    """uint8 [F, H, W, 3] -> float [1, 3, F, height, width] in [-1, 1]."""
    frames = [Image.fromarray(frame) for frame in video]
    return processor.preprocess_video(frames, height=height, width=width)


def encode(vae: nn.Module, pixels: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """[1, 3, F, H, W] pixels -> [1, F', C, H/8, W/8] latents sampled from the posterior, unscaled.

    The sample draws from `generator`: callers must encode before they draw the initial noise, as the
    reference pipelines do, or the same seed gives different videos.
    """
    latents = vae.encode(pixels).latent_dist.sample(generator)  # [1, C, F', h, w]
    return latents.permute(0, 2, 1, 3, 4)


def decode(vae: nn.Module, latents: torch.Tensor, processor: VideoProcessor) -> np.ndarray:
    """[1, F, C, h, w] scaled latents -> float32 frames [F', H, W, 3] in [0, 1]."""
    latents = latents.permute(0, 2, 1, 3, 4)  # [1, C, F, h, w]
    # Multiplied by the reciprocal, not divided, as diffusers does: x / s and x * (1 / s) differ in the
    # last bit, and the VAE can turn that into a different rounding of a pixel.
    video = vae.decode(latents * (1 / vae.config.scaling_factor)).sample  # [1, 3, F', H, W] in [-1, 1]
    return processor.postprocess_video(video, output_type="np")[0]


def to_uint8(frames: np.ndarray) -> np.ndarray:
    """float [0, 1] -> uint8, rounded to nearest the way diffusers turns frames into PIL images.

    NaN would become 0: an overflow anywhere upstream (a broken LoRA, fp16) would give a black video
    that looks like a success, so it is an error here instead."""
    if np.isnan(frames).any():
        raise VidgenError(
            f"the decoded video is NaN (not a number) in {np.isnan(frames).mean():.0%} of its values: "
            "the model's numbers overflowed",
            "try --dtype bf16 or fp32, or without --lora",
        )
    return (frames * 255).round().astype(np.uint8)


def set_tiling(vae: nn.Module, tiling: bool) -> None:
    """Tiled VAE passes: far less memory for large videos, at some speed."""
    if tiling:
        vae.enable_tiling()
    else:
        vae.disable_tiling()
