"""The VAE stage: preprocessing, encode/decode shapes and ranges, and the uint8 conversion."""

import numpy as np
import pytest
import torch
from diffusers import AutoencoderKLCogVideoX
from diffusers.image_processor import VaeImageProcessor

from vidgen.families.cogvideox import tiny as cogvideox_tiny
from vidgen.stages import vae as vae_stage


@pytest.fixture(scope="module")
def vae():
    torch.manual_seed(0)
    model = AutoencoderKLCogVideoX(**cogvideox_tiny.COGVIDEOX_VAE)
    return model.eval()


def test_to_uint8_rounds_like_diffusers_pil_output():
    frames = np.linspace(0, 1, 3 * 4 * 5 * 3, dtype=np.float32).reshape(3, 4, 5, 3)
    expected = np.stack([np.asarray(image) for image in VaeImageProcessor.numpy_to_pil(frames)])
    assert np.array_equal(vae_stage.to_uint8(frames), expected)


def test_image_and_video_pixels_are_resized_and_normalised(vae):
    processor = vae_stage.video_processor(vae)
    image = vae_stage.image_pixels(np.full((20, 30, 3), 255, np.uint8), processor, 16, 24)
    assert image.shape == (1, 3, 1, 16, 24) and torch.allclose(image, torch.ones(()))
    video = vae_stage.video_pixels(np.zeros((5, 16, 24, 3), np.uint8), processor, 16, 24)
    assert video.shape == (1, 3, 5, 16, 24) and torch.allclose(video, -torch.ones(()))


@torch.no_grad()
def test_encode_then_decode_keeps_the_frame_count_and_range(vae):
    pixels = torch.rand(1, 3, 9, 16, 24) * 2 - 1
    latents = vae_stage.encode(vae, pixels, torch.Generator().manual_seed(0))
    assert latents.shape == (1, 3, 4, 2, 3)  # [B, F, C, H, W]: the first frame, then 1 per 4; 8x smaller
    frames = vae_stage.decode(vae, latents, vae_stage.video_processor(vae))
    assert frames.shape == (9, 16, 24, 3) and frames.dtype == np.float32
    assert frames.min() >= 0 and frames.max() <= 1


def test_set_tiling_switches_the_vae_both_ways(vae):
    vae_stage.set_tiling(vae, True)
    assert vae.use_tiling
    vae_stage.set_tiling(vae, False)
    assert not vae.use_tiling
