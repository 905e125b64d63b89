"""Pieces the transformers share: timestep embedding, attention call, rotary, fused linears, MLP, norms."""

import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from diffusers.hooks._helpers import TransformerBlockMetadata, TransformerBlockRegistry
from diffusers.models.attention import AttentionModuleMixin
from diffusers.models.attention_dispatch import (
    AttentionBackendName,
    _check_attention_backend_requirements,
    dispatch_attention_fn,
)
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


class VidgenAttnProcessor:
    """What a vidgen attention layer reports as its processor while its q/k/v projections are separate.

    vidgen's layers compute attention in their own forward (the kernel picked by `set_attention_backend`),
    so they have no diffusers processor to swap; these two classes only name the projection layout, for
    diffusers' APIs that list processors (`attn_processors`, `original_attn_processors`), and setting one
    switches the layout.
    """


class FusedVidgenAttnProcessor:
    """What a vidgen attention layer reports as its processor while its projections are fused."""


class DispatchedAttention(AttentionModuleMixin, nn.Module):
    """An attention layer whose softmax(QK^T)V runs through diffusers' attention dispatcher.

    `backend` picks the kernel (flash, cuDNN, SageAttention, ...); None leaves the choice to the
    dispatcher's active backend, PyTorch's SDPA unless DIFFUSERS_ATTN_BACKEND or its context manager
    says otherwise. Going through the dispatcher is also where context parallelism plugs in.
    Being an `AttentionModuleMixin` is what diffusers' hooks (pyramid attention broadcast, FasterCache)
    and its QKV fusion look for; subclasses implement `fuse_projections` / `unfuse_projections` and
    `fused_projections`.
    """

    backend: AttentionBackendName | None = None
    # diffusers' ParallelConfig under context parallelism (vidgen.runtime.parallel): the dispatcher then runs
    # Ulysses or ring attention over the ranks' shards of the sequence. None: one process.
    parallel_config: Any = None
    # Whether its keys are the sequence that context parallelism shards (self-attention). Cross-attention
    # to the whole text needs no exchange: each rank's queries attend to the text it holds.
    splits_sequence = True
    is_cross_attention = False  # diffusers' hooks treat cross-attention layers apart
    # Ring attention on the CPU (vidgen.runtime.parallel.cpu_ring_attention), which the dispatcher cannot run:
    # none of its CPU kernels returns the log-sum-exp that ring attention merges partial results by.
    cpu_ring: Callable[..., torch.Tensor] | None = None

    def attend(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
        """[B, S, heads, D] query/key/value (diffusers' dispatcher layout) -> [B, S, heads * D]."""
        if self.cpu_ring is not None:
            return self.cpu_ring(query, key, value, self.parallel_config).flatten(2)
        return dispatch_attention_fn(
            query, key, value, backend=self.backend, parallel_config=self.parallel_config
        ).flatten(2)

    @property
    def processor(self) -> VidgenAttnProcessor | FusedVidgenAttnProcessor:
        return FusedVidgenAttnProcessor() if self.fused_projections else VidgenAttnProcessor()

    def set_processor(self, processor: Any) -> None:
        """Fuse or unfuse the projections as `processor` (one of vidgen's two) says."""
        if isinstance(processor, FusedVidgenAttnProcessor):
            self.fuse_projections()
        elif isinstance(processor, VidgenAttnProcessor):
            self.unfuse_projections()
        else:
            raise TypeError(
                f"{type(self).__name__} computes attention itself and cannot run diffusers' "
                f"{type(processor).__name__}; pick its kernel with set_attention_backend"
            )

    def set_attention_backend(self, backend: str) -> None:
        """This layer's kernel, by diffusers' backend name (the model's method sets every layer's)."""
        name = AttentionBackendName(backend.lower())
        _check_attention_backend_requirements(name)
        self.backend = name


def register_block(
    block: type[nn.Module], video_output: int | None = None, text_output: int | None = None
) -> None:
    """Tell diffusers' step-cache hooks (first-block cache, MagCache, ...) that `block` is a transformer
    block, and which of its outputs are the video (`hidden_states`) and text tokens (None: it returns one
    tensor). Each model module calls it on import, so `enable_cache` works on a bare vidgen model.
    """
    # Written into the registry rather than through `register()`, which first imports every diffusers
    # transformer module to register theirs (a second or more at import); those still get registered
    # the first time a hook looks a block up.
    metadata = TransformerBlockMetadata(
        return_hidden_states_index=video_output, return_encoder_hidden_states_index=text_output
    )
    metadata._cls = block
    TransformerBlockRegistry._registry[block] = metadata


class AttentionBackendMixin:
    """`set_attention_backend` / `reset_attention_backend` for a model built of `DispatchedAttention`.

    Same names and backend strings as diffusers' ModelMixin, but the choice stays on this model's
    layers: diffusers' version also changes the process-wide active backend, which would reach every
    other model in the process.
    """

    def set_attention_backend(self, backend: str) -> None:
        """Run every attention layer with diffusers' backend `backend` ("native", "flash", "_native_cudnn",
        ...); raises ValueError for an unknown name, RuntimeError when its package is missing."""
        name = AttentionBackendName(backend.lower())
        _check_attention_backend_requirements(name)
        self._set_backend(name)

    def reset_attention_backend(self) -> None:
        """Back to the dispatcher's active backend."""
        self._set_backend(None)

    def _set_backend(self, backend: AttentionBackendName | None) -> None:
        for module in self.modules():
            if isinstance(module, DispatchedAttention):
                module.backend = backend


def apply_rotary_(x: torch.Tensor, freqs: torch.Tensor) -> torch.Tensor:
    """Rotate channel pairs (x[..., 2i], x[..., 2i + 1]) of x [..., D] in place by complex freqs [..., D/2].

    Both references rotate in float32 whatever x's dtype, so a low-precision x is rotated through a float32
    copy and written back. Callers pass the fresh output of a projection or norm; returns x.
    """
    pairs = torch.view_as_complex(x.float().unflatten(-1, (-1, 2)))  # shares x's storage when x is float32
    pairs.mul_(freqs)
    if x.dtype != torch.float32:
        x.copy_(torch.view_as_real(pairs).flatten(-2))
    return x


def concat_linears(layers: list[nn.Linear]) -> nn.Linear:
    """One Linear computing all of `layers` (same input) side by side: their outputs concatenated."""
    weight = torch.cat([layer.weight.detach() for layer in layers])
    fused = nn.Linear(weight.shape[1], weight.shape[0], bias=layers[0].bias is not None, device="meta")
    fused.weight = nn.Parameter(weight, requires_grad=layers[0].weight.requires_grad)
    if fused.bias is not None:
        fused.bias = nn.Parameter(
            torch.cat([layer.bias.detach() for layer in layers]), fused.weight.requires_grad
        )
    return fused


def split_linear(fused: nn.Linear, parts: int) -> list[nn.Linear]:
    """Undo `concat_linears`: `parts` Linears of equal output size holding exact copies of fused's slices."""
    biases = fused.bias.detach().chunk(parts) if fused.bias is not None else [None] * parts
    layers = []
    for weight, bias in zip(fused.weight.detach().chunk(parts), biases, strict=True):
        layer = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None, device="meta")
        layer.weight = nn.Parameter(weight.clone(), requires_grad=fused.weight.requires_grad)
        if bias is not None:
            layer.bias = nn.Parameter(bias.clone(), requires_grad=fused.weight.requires_grad)
        layers.append(layer)
    return layers


class ActivationProjection(nn.Module):
    """Linear then activation; the `net.0` of diffusers' FeedForward (its `proj` holds the weights)."""

    def __init__(self, dim: int, inner_dim: int, act: str = "gelu-approximate") -> None:
        super().__init__()
        self.proj = nn.Linear(dim, inner_dim)
        self.act = activation(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.proj(x))


class FeedForward(nn.Module):
    """dim -> inner_dim -> out_dim (default: dim) MLP with diffusers' FeedForward parameter names
    (`net.0.proj`, `net.2`)."""

    def __init__(
        self,
        dim: int,
        inner_dim: int,
        act: str = "gelu-approximate",
        dropout: float = 0.0,
        out_dim: int | None = None,
    ) -> None:
        super().__init__()
        self.net = nn.Sequential(
            ActivationProjection(dim, inner_dim, act),
            nn.Dropout(dropout),
            nn.Linear(inner_dim, out_dim or dim),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class Float32LayerNorm(nn.LayerNorm):
    """LayerNorm computed in float32 whatever the input's dtype; returns float32.

    A module rather than a function on `norm.weight`, so that accelerate's offload hooks, which run on
    a module's forward, bring the weights to the device before they are read.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.weight.float() if self.weight is not None else None
        bias = self.bias.float() if self.bias is not None else None
        return F.layer_norm(x.float(), self.normalized_shape, weight, bias, self.eps)
