"""Pieces both transformers share: the timestep embedding and the attention call."""

import math

import torch
import torch.nn.functional as F
from torch import nn


def sinusoidal_embedding(
    timesteps: torch.Tensor,
    dim: int,
    flip_sin_to_cos: bool = False,
    freq_shift: float = 1.0,
    max_period: float = 10000.0,
) -> torch.Tensor:
    """[B] timesteps -> [B, dim] float32 sin/cos features (the DDPM convention diffusers uses)."""
    half = dim // 2
    # Computed in float32 whatever the model dtype: timesteps up to 1000 lose the low frequencies in bf16.
    freqs = torch.exp(
        -math.log(max_period)
        * torch.arange(half, dtype=torch.float32, device=timesteps.device)
        / (half - freq_shift)
    )
    angles = timesteps[:, None].float() * freqs[None, :]
    first, second = (
        (torch.cos(angles), torch.sin(angles)) if flip_sin_to_cos else (torch.sin(angles), torch.cos(angles))
    )
    emb = torch.cat([first, second], dim=-1)
    if dim % 2 == 1:
        emb = F.pad(emb, (0, 1))
    return emb


class TimestepMLP(nn.Module):
    """Linear -> activation -> linear; parameter names match diffusers' TimestepEmbedding."""

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int | None = None, act: str = "silu") -> None:
        super().__init__()
        self.linear_1 = nn.Linear(in_dim, hidden_dim)
        self.act = activation(act)
        self.linear_2 = nn.Linear(hidden_dim, out_dim or hidden_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear_2(self.act(self.linear_1(x)))


def activation(name: str) -> nn.Module:
    """The activations the released configs name, by their diffusers names."""
    table = {
        "silu": nn.SiLU,
        "swish": nn.SiLU,
        "gelu": nn.GELU,
        "gelu-approximate": lambda: nn.GELU(approximate="tanh"),
        "gelu_tanh": lambda: nn.GELU(approximate="tanh"),
        "relu": nn.ReLU,
    }
    if name not in table:
        raise ValueError(f"unsupported activation {name!r}; expected one of {sorted(table)}")
    return table[name]()


def attention(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    """[B, heads, S, D] query/key/value -> [B, S, heads * D]."""
    out = F.scaled_dot_product_attention(query, key, value)
    return out.transpose(1, 2).flatten(2)
