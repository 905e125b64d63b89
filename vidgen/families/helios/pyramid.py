"""Pyramid sampling for Helios-Mid and Helios-Distilled: each chunk starts as downsampled noise, is
denoised at the coarse scale, then upsampled and renoised with spatially correlated ("block") noise
for the next, finer stage.

Every operation here repeats diffusers' `HeliosPyramidPipeline` op for op, so that the same seed gives
the same latents; where a float expression looks needlessly roundabout, that is why.
"""

import math

import torch
import torch.nn.functional as F

# diffusers adds this to the covariance's diagonal before factoring it.
_JITTER = 1e-8


def block_covariance(gamma: float, block_size: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """(1 + γ)·I − γ·11ᵀ (+ jitter), float32: the covariance of the noise inside one patch block.

    Its eigenvalues are 1 + γ (on vectors summing to zero) and 1 − (block_size − 1)·γ (on 11ᵀ); for the
    released γ = 1/3 and 2x2 blocks the second is zero, so the matrix is singular.
    """
    eye = torch.eye(block_size, device=device)
    cov = eye * (1 + gamma) - torch.ones(block_size, block_size, device=device) * gamma
    return cov + eye * _JITTER


def block_noise_factor(gamma: float, block_size: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """A lower-triangular float32 L with L·Lᵀ = `block_covariance(gamma, block_size)`, that never fails.

    diffusers calls `torch.linalg.cholesky` on the float32 covariance, which raises `LinAlgError` for
    γ = 1/3 on CPU (the zero eigenvalue rounds negative and the jitter is below float32's resolution
    at 1). We factor the same float32 matrix with `cholesky_ex`, so wherever diffusers succeeds the factor
    (and so every noise draw) is bit-identical; only where it reports failure do we factor in float64,
    where the jitter keeps the matrix positive definite, and round that factor to float32.
    """
    cov = block_covariance(gamma, block_size, device)
    factor, info = torch.linalg.cholesky_ex(cov)
    if int(info) == 0:
        return factor
    factor64, info64 = torch.linalg.cholesky_ex(_covariance_float64(gamma, block_size, cov.device))
    if int(info64) != 0:
        raise ValueError(
            f"gamma {gamma} gives no covariance for {block_size}-pixel blocks: it needs "
            f"gamma <= 1/{block_size - 1}"
        )
    return factor64.float()


def _covariance_float64(gamma: float, block_size: int, device: torch.device) -> torch.Tensor:
    eye = torch.eye(block_size, dtype=torch.float64, device=device)
    ones = torch.ones(block_size, block_size, dtype=torch.float64, device=device)
    return eye * (1 + gamma) - ones * gamma + eye * _JITTER


def sample_block_noise(
    shape: tuple[int, int, int, int, int],
    patch: tuple[int, int],
    gamma: float,
    generator: torch.Generator,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """Noise [B, C, F, H, W] whose values inside each patch block are correlated by the block covariance.

    Draws one standard normal 4-vector per block from `generator` (on the generator's device, as
    diffusers does, so a CPU generator gives the same noise on any accelerator) and multiplies by Lᵀ.
    """
    batch, channels, frames, height, width = shape
    ph, pw = patch
    factor = block_noise_factor(gamma, ph * pw, device)
    blocks = batch * channels * frames * (height // ph) * (width // pw)
    z = torch.randn(blocks, ph * pw, generator=generator, device=generator.device).to(device)
    noise = z @ factor.T  # [blocks, ph*pw]
    noise = noise.view(batch, channels, frames, height // ph, width // pw, ph, pw)
    # [B, C, F, H/ph, W/pw, ph, pw] -> [B, C, F, H, W]: block rows interleave with pixel rows.
    return noise.permute(0, 1, 2, 3, 5, 4, 6).reshape(batch, channels, frames, height, width)


def diffusers_sample_block_noise(
    pipe, batch, channels, frames, height, width, patch_size, device, generator
) -> torch.Tensor:
    """A stand-in for diffusers' `HeliosPyramidPipeline.sample_block_noise` (same arguments): the same
    numbers wherever diffusers' draws them, and no failure where its float32 Cholesky fails (on some
    CPUs, for the released gamma). The parity tests and the CPU bench run diffusers' pipeline with it."""
    shape = (batch, channels, frames, height, width)
    return sample_block_noise(shape, patch_size[1:], pipe.scheduler.config.gamma, generator, device)


def downsample_noise(latents: torch.Tensor, stages: int) -> torch.Tensor:
    """[B, C, F, H, W] -> [B, C, F, H/2^(stages-1), W/2^(stages-1)]: the coarsest stage's start.

    Bilinear halving per stage, times 2 each time to keep unit variance as diffusers does.
    """
    batch, channels, frames, height, width = latents.shape
    planes = latents.permute(0, 2, 1, 3, 4).reshape(batch * frames, channels, height, width)
    for _ in range(stages - 1):
        height, width = height // 2, width // 2
        planes = F.interpolate(planes, size=(height, width), mode="bilinear") * 2
    return planes.reshape(batch, frames, channels, height, width).permute(0, 2, 1, 3, 4)


def upsample(latents: torch.Tensor) -> torch.Tensor:
    """[B, C, F, H, W] -> [B, C, F, 2H, 2W], nearest neighbour: the next stage's clean estimate."""
    batch, channels, frames, height, width = latents.shape
    planes = latents.permute(0, 2, 1, 3, 4).reshape(batch * frames, channels, height, width)
    planes = F.interpolate(planes, size=(height * 2, width * 2), mode="nearest")
    return planes.reshape(batch, frames, channels, height * 2, width * 2).permute(0, 2, 1, 3, 4)


def renoise_coefficients(start_sigma: float, gamma: float) -> tuple[float, float]:
    """(alpha, beta) so that alpha·upsampled + beta·block_noise sits on the next stage's schedule.

    `start_sigma` is the scheduler's `ori_start_sigmas[stage]`. The expression keeps diffusers' detour
    through `1 - (1 - start_sigma)`, which is not always `start_sigma` in floating point.
    """
    signal = 1 - start_sigma
    alpha = 1 / (math.sqrt(1 + (1 / gamma)) * (1 - signal) + signal)
    beta = alpha * (1 - signal) / math.sqrt(gamma)
    return alpha, beta
