"""Block noise for Helios' pyramid stages: diffusers' draws where diffusers works, no failure where it fails.

diffusers' `HeliosPyramidPipeline.sample_block_noise` takes `torch.linalg.cholesky` of the float32
covariance (1 + γ)I − γ11ᵀ (+1e-8 I). For the released γ = 1/3 that matrix is singular (eigenvalue
1 − 3γ = 0 on 11ᵀ) and the factorisation raises on some CPUs (the LAPACK kernel decides). It is
called as an unbound method here with a stand-in `self`: it reads only `self.scheduler.config.gamma`.
"""

from types import SimpleNamespace

import pytest
import torch
from diffusers import HeliosPyramidPipeline

from vidgen.families.helios import pyramid

SHAPE = (1, 4, 3, 8, 12)  # [B, C, F, H, W]


def diffusers_block_noise(gamma: float, generator: torch.Generator) -> torch.Tensor:
    stand_in = SimpleNamespace(scheduler=SimpleNamespace(config=SimpleNamespace(gamma=gamma)))
    return HeliosPyramidPipeline.sample_block_noise(stand_in, *SHAPE, (1, 2, 2), "cpu", generator)


def blocks(noise: torch.Tensor) -> torch.Tensor:
    """[B, C, F, H, W] -> [n, 4]: each 2x2 patch's values, row by row."""
    b, c, f, h, w = noise.shape
    return noise.view(b, c, f, h // 2, 2, w // 2, 2).permute(0, 1, 2, 3, 5, 4, 6).reshape(-1, 4)


def test_released_gamma_equals_diffusers_where_it_succeeds_and_never_fails_where_it_raises():
    # Whether float32 Cholesky of the singular matrix raises depends on the CPU's LAPACK kernels: it
    # raises on some machines and returns a factor on others. Either way vidgen must give noise, and
    # the very same draws whenever diffusers gives any.
    try:
        reference = diffusers_block_noise(1 / 3, torch.Generator().manual_seed(0))
    except torch.linalg.LinAlgError:
        reference = None
    ours = pyramid.sample_block_noise(SHAPE, (2, 2), 1 / 3, torch.Generator().manual_seed(0))
    assert torch.isfinite(ours).all()
    if reference is not None:
        assert torch.equal(ours, reference)


def test_float32_factor_failure_falls_back_to_a_float64_factor(monkeypatch):
    real = torch.linalg.cholesky_ex

    def failing_in_float32(matrix, **kwargs):
        factor, info = real(matrix, **kwargs)
        if matrix.dtype == torch.float32:  # as LAPACK reports a failed factorisation
            return torch.full_like(factor, float("nan")), torch.ones_like(info)
        return factor, info

    monkeypatch.setattr(torch.linalg, "cholesky_ex", failing_in_float32)
    factor = pyramid.block_noise_factor(1 / 3, 4)
    assert torch.isfinite(factor).all()
    assert torch.allclose(
        factor.double() @ factor.double().T, pyramid.block_covariance(1 / 3, 4).double(), atol=1e-6
    )


@pytest.mark.parametrize("gamma", [0.0, 0.25, 0.3])
def test_noise_equals_diffusers_draws_where_diffusers_succeeds(gamma):
    reference = diffusers_block_noise(gamma, torch.Generator().manual_seed(5))
    ours = pyramid.sample_block_noise(SHAPE, (2, 2), gamma, torch.Generator().manual_seed(5))
    assert torch.equal(ours, reference)


def test_factor_for_the_released_gamma_reproduces_the_covariance():
    factor = pyramid.block_noise_factor(1 / 3, 4)
    assert factor.dtype == torch.float32
    assert torch.equal(factor, factor.tril())
    assert torch.allclose(factor @ factor.T, pyramid.block_covariance(1 / 3, 4), atol=1e-6)


def test_block_noise_for_the_released_gamma_has_the_block_covariance():
    # 1.25M blocks: the standard error of each empirical covariance entry is about 1.2e-3.
    shape = (1, 8, 12, 200, 260)
    noise = pyramid.sample_block_noise(shape, (2, 2), 1 / 3, torch.Generator().manual_seed(0))
    values = blocks(noise).double()
    empirical = values.T @ values / values.shape[0]
    expected = pyramid.block_covariance(1 / 3, 4).double()
    assert (empirical - expected).abs().max() < 0.01
    # The degenerate direction: the four values of a block sum to (almost) zero.
    assert values.sum(dim=1).var() < 1e-6


def test_gamma_beyond_a_covariance_is_a_clear_error():
    with pytest.raises(ValueError, match="gamma"):
        pyramid.block_noise_factor(0.5, 4)
