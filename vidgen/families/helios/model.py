"""Helios transformer: vidgen's implementation, loading diffusers' `HeliosTransformer3DModel` checkpoints.

A Wan-style DiT whose sequence is [long history | mid history | short history | noisy chunk]. The three
history terms enter through their own patch embeddings (1x, 2x, 4x coarser), take rotary positions from
their frame indices (averaged down to their coarser grids), are denoised at timestep 0, and skip the text
cross-attention; only the noisy chunk's prediction is returned.

Numerics follow diffusers 0.42.1 step for step (float32 norms, modulation, residuals and rotary; the time
MLP and scale/shift tables kept in float32 under bf16 loading), so bf16 outputs match its bf16 outputs
bit for bit on CPU. Beyond it:
- modulation is applied per segment (history rows, noisy rows) instead of materialising a float32
  [B, S, 6, D] table in every block;
- an optional `HeliosCache` keeps the rotary table, the projected text, every block's cross-attention
  keys/values and the history's timestep-0 embedding between the denoising steps of a chunk;
- `fuse_qkv_projections` replaces q/k/v (cross: k/v) by one Linear instead of keeping both copies;
- bf16 with `is_amplify_history` runs (diffusers 0.42.1 promotes the history keys to float32 and its
  attention call rejects the mixed dtypes).
Inference only: the residual stream is updated in place.
"""

import math
from collections.abc import Callable
from functools import partial
from typing import Any, NamedTuple, TypeVar

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.loaders import PeftAdapterMixin
from diffusers.models._modeling_parallel import ContextParallelInput, ContextParallelOutput
from diffusers.models.attention import AttentionMixin
from diffusers.models.cache_utils import CacheMixin
from diffusers.models.modeling_outputs import Transformer2DModelOutput
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

from vidgen.core.errors import VidgenError
from vidgen.families.layers import (
    AttentionBackendMixin,
    DispatchedAttention,
    FeedForward,
    TimestepMLP,
    apply_rotary_,
    concat_linears,
    register_block,
    sinusoidal_embedding,
    split_linear,
)

T = TypeVar("T")

# The learned history-key gain lies in (1, MAX_HISTORY_KEY_GAIN).
MAX_HISTORY_KEY_GAIN = 10.0
# How much coarser the mid and long history token grids are than the short one (per axis).
MID_FACTOR, LONG_FACTOR = 2, 4


# ---------------------------------------------------------------------------------------------------
# Per-chunk cache
# ---------------------------------------------------------------------------------------------------


class HeliosCache:
    """What stays the same across the denoising steps of one chunk, computed once and reused.

    Holds the rotary table, the projected text, each block's cross-attention keys/values and the history's
    timestep-0 embedding. Each entry remembers the tensors it came from and is recomputed when a call
    passes other tensor objects or other sizes, so one cache per guidance branch (cond / uncond) can follow
    a whole generation. Mutating those input tensors in place, or the model's weights, makes the cache
    stale: start a new one then. The keys/values cost 2 x layers x B x text tokens x 5120 values (420 MB
    in bf16 for the released model, one prompt).
    """

    def __init__(self) -> None:
        self.entries: dict[str, tuple[tuple, Any]] = {}
        self.computed = 0  # entries computed so far (tests and benchmarks read it)

    def get(self, name: str, sources: tuple, compute: Callable[[], T]) -> T:
        entry = self.entries.get(name)
        if entry is not None and _same_sources(entry[0], sources):
            return entry[1]
        value = compute()
        self.entries[name] = (sources, value)
        self.computed += 1
        return value


def _same_sources(old: tuple, new: tuple) -> bool:
    # Tensors by identity: comparing their values would cost a device sync every step.
    if len(old) != len(new):
        return False
    return all(a is b if isinstance(a, torch.Tensor) else a == b for a, b in zip(old, new, strict=True))


def _cached(cache: HeliosCache | None, name: str, sources: tuple, compute: Callable[[], T]) -> T:
    return compute() if cache is None else cache.get(name, sources, compute)


# ---------------------------------------------------------------------------------------------------
# Rotary positions
# ---------------------------------------------------------------------------------------------------


def _axis_angles(positions: torch.Tensor, dim: int, theta: float) -> torch.Tensor:
    """positions [...] -> [..., dim/2] float32 angles, one per channel pair of this axis."""
    inv_freq = 1.0 / (theta ** (torch.arange(0, dim, 2, dtype=torch.float32)[: dim // 2] / dim))
    return positions.float()[..., None] * inv_freq.to(positions.device)


def rotary_table(
    frame_indices: torch.Tensor, height: int, width: int, dims: tuple[int, int, int], theta: float
) -> torch.Tensor:
    """[B, F] frame positions on a height x width grid -> [B, D, F, H, W] float32 (D = sum(dims)).

    Channels are the cos of the (t, y, x) angles of each channel pair (D/2), then their sin (D/2).
    """
    device = frame_indices.device
    batch, frames = frame_indices.shape
    t = _axis_angles(frame_indices.to(device, torch.float32), dims[0], theta)  # [B, F, dt/2]
    y = _axis_angles(torch.arange(height, device=device, dtype=torch.float32), dims[1], theta)  # [H, dy/2]
    x = _axis_angles(torch.arange(width, device=device, dtype=torch.float32), dims[2], theta)  # [W, dx/2]
    axes = (t.transpose(1, 2)[..., None, None], y.T[None, :, None, :, None], x.T[None, :, None, None, :])
    size = (batch, -1, frames, height, width)
    return torch.cat([a.cos().expand(size) for a in axes] + [a.sin().expand(size) for a in axes], dim=1)


def _pad_to_multiple(x: torch.Tensor, sizes: tuple[int, int, int]) -> torch.Tensor:
    """Replicate-pad the last three dims of x [B, C, F, H, W] up to multiples of sizes."""
    pads = [(s - n % s) % s for n, s in zip(x.shape[2:], sizes, strict=True)]
    return F.pad(x, (0, pads[2], 0, pads[1], 0, pads[0]), mode="replicate")


def _coarsen(table: torch.Tensor, factor: int) -> torch.Tensor:
    """Average a rotary table over factor^3 cells, one per token of a `factor` times coarser patch.

    The reference averages the cos/sin values themselves (not the angles); so do we.
    """
    if factor == 1:
        return table
    return F.avg_pool3d(_pad_to_multiple(table, (factor,) * 3), factor)


def _as_complex(table: torch.Tensor) -> torch.Tensor:
    """[B, D, F, H, W] cos/sin table -> [B, F*H*W, 1, D/2] complex64, broadcasting over heads."""
    cos, sin = table.flatten(2).transpose(1, 2).chunk(2, dim=-1)
    return torch.complex(cos.contiguous(), sin.contiguous())[:, :, None]


# ---------------------------------------------------------------------------------------------------
# Float32 norm, modulation and gated residuals (the reference's dtype rules)
# ---------------------------------------------------------------------------------------------------


class Float32LayerNorm(nn.LayerNorm):
    """LayerNorm computed in float32 whatever the input's dtype; returns float32.

    A module rather than a function on `norm.weight`, so that accelerate's offload hooks, which run on
    a module's forward, bring the weights to the device before they are read.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.weight.float() if self.weight is not None else None
        bias = self.bias.float() if self.bias is not None else None
        return F.layer_norm(x.float(), self.normalized_shape, weight, bias, self.eps)


def _modulate_(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor, split: int) -> torch.Tensor:
    """In place x * (1 + scale) + shift for x [B, S, D] and rows [B, 2, D].

    Row 0 serves the first `split` (history) tokens, row 1 the noisy ones: cheaper than the reference's
    per-token table and the same arithmetic.
    """
    x[:, :split].mul_(1 + scale[:, :1]).add_(shift[:, :1])
    x[:, split:].mul_(1 + scale[:, 1:]).add_(shift[:, 1:])
    return x


def _gated_residual(x: torch.Tensor, update: torch.Tensor, gate: torch.Tensor, split: int) -> torch.Tensor:
    """x + update * gate in float32 (gate rows [B, 2, D] per segment as in `_modulate_`), in x's dtype.

    `update` is left as it is: a step cache (pyramid attention broadcast, FasterCache) may hold it to
    return again on a later step.
    """
    out = update * gate[:, 1:]  # a new float32 tensor (bf16 * float32 promotes, as .float() would)
    out[:, :split] = update[:, :split] * gate[:, :1]
    return out.add_(x).to(x.dtype)


# ---------------------------------------------------------------------------------------------------
# Layers
# ---------------------------------------------------------------------------------------------------


class _FusableProjections(DispatchedAttention):
    """Attention whose input projections `fused_parts` can be merged into one Linear named `fused_name`."""

    fused_parts: tuple[str, ...] = ()
    fused_name = ""

    @property
    def fused_projections(self) -> bool:
        return hasattr(self, self.fused_name)

    def fuse_projections(self) -> None:
        if hasattr(self, self.fused_name):
            return
        # Replacing (not keeping) the separate layers: a 14B model would otherwise hold ~10 GB twice.
        setattr(self, self.fused_name, concat_linears([getattr(self, name) for name in self.fused_parts]))
        for name in self.fused_parts:
            delattr(self, name)

    def unfuse_projections(self) -> None:
        if not hasattr(self, self.fused_name):
            return
        layers = split_linear(getattr(self, self.fused_name), len(self.fused_parts))
        for name, layer in zip(self.fused_parts, layers, strict=True):
            setattr(self, name, layer)
        delattr(self, self.fused_name)

    def _project(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        fused = getattr(self, self.fused_name, None)
        if fused is not None:
            return fused(x).chunk(len(self.fused_parts), dim=-1)
        return tuple(getattr(self, name)(x) for name in self.fused_parts)


class HeliosSelfAttention(_FusableProjections):
    """Self-attention over the whole sequence with rotary q/k, RMSNorm across heads, optional history gain."""

    fused_parts = ("to_q", "to_k", "to_v")
    fused_name = "to_qkv"

    def __init__(
        self,
        dim: int,
        heads: int,
        eps: float,
        amplify_history: bool = False,
        history_scale_mode: str = "per_head",
    ) -> None:
        super().__init__()
        self.heads = heads
        self.to_q = nn.Linear(dim, dim)
        self.to_k = nn.Linear(dim, dim)
        self.to_v = nn.Linear(dim, dim)
        self.to_out = nn.ModuleList([nn.Linear(dim, dim)])  # `to_out.0` in the checkpoints
        self.norm_q = nn.RMSNorm(dim, eps=eps)
        self.norm_k = nn.RMSNorm(dim, eps=eps)
        self.history_scale_mode = history_scale_mode
        if amplify_history:
            if history_scale_mode not in ("per_head", "scalar"):
                raise ValueError(
                    f"history_scale_mode must be 'per_head' or 'scalar', got {history_scale_mode!r}"
                )
            self.history_key_scale = nn.Parameter(
                torch.ones(heads if history_scale_mode == "per_head" else 1)
            )

    def forward(self, x: torch.Tensor, freqs: torch.Tensor, split: int) -> torch.Tensor:
        """x [B, S, D], freqs [B or 1, S, 1, D/heads/2] complex; the first `split` tokens are history."""
        query, key, value = self._project(x)
        query = apply_rotary_(self.norm_q(query).unflatten(-1, (self.heads, -1)), freqs)  # [B, S, H, Dh]
        key = apply_rotary_(self.norm_k(key).unflatten(-1, (self.heads, -1)), freqs)
        if hasattr(self, "history_key_scale") and split > 0:
            key[:, :split].mul_(self._history_key_gain())
        value = value.unflatten(-1, (self.heads, -1))
        return self.to_out[0](self.attend(query, key, value))

    def _history_key_gain(self) -> torch.Tensor:
        gain = 1.0 + torch.sigmoid(self.history_key_scale) * (MAX_HISTORY_KEY_GAIN - 1.0)
        return gain.view(1, 1, -1, 1) if self.history_scale_mode == "per_head" else gain


class HeliosCrossAttention(_FusableProjections):
    """Attention from video tokens to the projected text; keys/values can be computed once per prompt."""

    fused_parts = ("to_k", "to_v")
    fused_name = "to_kv"
    splits_sequence = False
    is_cross_attention = True

    def __init__(self, dim: int, heads: int, eps: float, added_kv_proj_dim: int | None = None) -> None:
        super().__init__()
        self.heads = heads
        self.to_q = nn.Linear(dim, dim)
        self.to_k = nn.Linear(dim, dim)
        self.to_v = nn.Linear(dim, dim)
        self.to_out = nn.ModuleList([nn.Linear(dim, dim)])
        self.norm_q = nn.RMSNorm(dim, eps=eps)
        self.norm_k = nn.RMSNorm(dim, eps=eps)
        if added_kv_proj_dim is not None:
            # Loaded like the reference's image-context projections, which its attention never uses.
            self.add_k_proj = nn.Linear(added_kv_proj_dim, dim)
            self.add_v_proj = nn.Linear(added_kv_proj_dim, dim)
            self.norm_added_k = nn.RMSNorm(dim, eps=eps)

    def key_value(self, text: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """text [B, L, D] -> keys, values [B, L, H, D/H]."""
        key, value = self._project(text)
        key = self.norm_k(key).unflatten(-1, (self.heads, -1))
        return key, value.unflatten(-1, (self.heads, -1))

    def forward(self, x: torch.Tensor, key_value: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """x [B, N, D] -> [B, N, D]."""
        query = self.norm_q(self.to_q(x)).unflatten(-1, (self.heads, -1))
        return self.to_out[0](self.attend(query, *key_value))


class HeliosTransformerBlock(nn.Module):
    """Modulated self-attention, cross-attention (noisy tokens only with guidance_cross_attn), MLP."""

    def __init__(
        self,
        dim: int,
        ffn_dim: int,
        heads: int,
        cross_attn_norm: bool,
        eps: float,
        added_kv_proj_dim: int | None,
        guidance_cross_attn: bool,
        is_amplify_history: bool,
        history_scale_mode: str,
    ) -> None:
        super().__init__()
        self.norm1 = Float32LayerNorm(dim, eps, elementwise_affine=False)
        self.attn1 = HeliosSelfAttention(dim, heads, eps, is_amplify_history, history_scale_mode)
        self.attn2 = HeliosCrossAttention(dim, heads, eps, added_kv_proj_dim)
        self.norm2 = Float32LayerNorm(dim, eps, elementwise_affine=True) if cross_attn_norm else None
        self.ffn = FeedForward(dim, ffn_dim, act="gelu-approximate")
        self.norm3 = Float32LayerNorm(dim, eps, elementwise_affine=False)
        self.scale_shift_table = nn.Parameter(torch.randn(1, 6, dim) / dim**0.5)
        self.guidance_cross_attn = guidance_cross_attn

    def forward(
        self,
        hidden_states: torch.Tensor,
        text_key_value: tuple[torch.Tensor, torch.Tensor],
        time_rows: torch.Tensor,
        freqs: torch.Tensor,
        split: int,
    ) -> torch.Tensor:
        """[B, S, D] (first `split` tokens history) -> [B, S, D]; time_rows [B, 2, 6, D]: history, noisy.

        `hidden_states` is diffusers' name, which its step-cache hooks look up.
        """
        x = hidden_states
        shift, scale, gate, ffn_shift, ffn_scale, ffn_gate = (
            self.scale_shift_table[:, None] + time_rows.float()
        ).unbind(2)  # each [B, 2, D], float32

        normed = _modulate_(self.norm1(x), shift, scale, split).to(x.dtype)
        x = _gated_residual(x, self.attn1(normed, freqs, split), gate, split)

        # With guidance_cross_attn only the noisy tokens attend to the text.
        start = split if self.guidance_cross_attn else 0
        tokens = x[:, start:]
        normed = self.norm2(tokens).to(x.dtype) if self.norm2 is not None else tokens
        tokens += self.attn2(normed, text_key_value)

        normed = _modulate_(self.norm3(x), ffn_shift, ffn_scale, split).to(x.dtype)
        return _gated_residual(x, self.ffn(normed), ffn_gate, split)


register_block(HeliosTransformerBlock)


class HeliosConditionEmbedder(nn.Module):
    """Timestep -> (embedding, six modulation vectors); text [B, L, text_dim] -> [B, L, D]."""

    def __init__(self, dim: int, freq_dim: int, text_dim: int) -> None:
        super().__init__()
        self.freq_dim = freq_dim
        self.time_embedder = TimestepMLP(freq_dim, dim)
        self.time_proj = nn.Linear(dim, 6 * dim)
        # Linear -> tanh-GELU -> Linear, the layout (and parameter names) of the reference's text projection.
        self.text_embedder = TimestepMLP(text_dim, dim, act="gelu_tanh")

    def embed_time(self, timesteps: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """[N] timesteps -> temb [N, D] and modulation [N, 6, D], both in `dtype` (the text's dtype)."""
        freqs = sinusoidal_embedding(timesteps, self.freq_dim, flip_sin_to_cos=True, freq_shift=0)
        # The time MLP stays float32 under bf16 loading; its output drops to the text's dtype as in diffusers.
        temb = self.time_embedder(freqs.to(self.time_embedder.linear_1.weight.dtype)).to(dtype)
        return temb, self.time_proj(F.silu(temb)).unflatten(-1, (6, -1))


class HeliosOutputNorm(nn.Module):
    """Float32 LayerNorm modulated by the noisy chunk's timestep embedding."""

    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.scale_shift_table = nn.Parameter(torch.randn(1, 2, dim) / dim**0.5)
        self.norm = Float32LayerNorm(dim, eps, elementwise_affine=False)

    def forward(self, x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        """x [B, N, D], temb [B, D] -> [B, N, D]."""
        shift, scale = (self.scale_shift_table + temb[:, None].float()).chunk(2, dim=1)  # [B, 1, D] each
        return (self.norm(x) * (1 + scale) + shift).to(x.dtype)


class _HistoryStream(NamedTuple):
    latents: torch.Tensor  # [B, C, F, H, W], padded to the patch embedding's kernel
    indices: torch.Tensor  # [B or 1, F] frame positions
    conv: nn.Conv3d
    factor: int  # token grid coarser than the 1x (short) grid by this much per axis
    rotary_grid: tuple[int, int]  # the 1x token grid (height, width) the rotary table is built on


def _patchify(conv: nn.Conv3d, latents: torch.Tensor) -> torch.Tensor:
    """[B, C, F, H, W] -> [B, F'*H'*W', D] tokens in (frame, row, column) order.

    Kept a convolution: a matmul over the same weights is faster on CPU (oneDNN re-lays out big conv
    weights every call) but sums in another order, and bf16 outputs then stop matching diffusers'.
    """
    return conv(latents).flatten(2).transpose(1, 2)


def history_token_count(frames: tuple[int, int, int], height: int, width: int, patch: tuple[int, ...]) -> int:
    """Tokens the [long, mid, short] history terms of `frames` latent frames each, on a `height` x `width`
    latent grid, patch to (the long and mid terms' patches are LONG_FACTOR and MID_FACTOR times larger)."""
    total = 0
    for count, factor in zip(frames, (LONG_FACTOR, MID_FACTOR, 1), strict=True):
        p_t, p_h, p_w = (factor * p for p in patch)
        total += (count // p_t) * (height // p_h) * (width // p_w)
    return total


def _unpatchify(
    tokens: torch.Tensor, grid: tuple[int, int, int], patch: tuple[int, int, int]
) -> torch.Tensor:
    """[B, F'*H'*W', pt*ph*pw*C] -> [B, C, F'*pt, H'*ph, W'*pw]."""
    batch = tokens.shape[0]
    x = tokens.reshape(batch, *grid, *patch, -1)  # [B, F', H', W', pt, ph, pw, C]
    x = x.permute(0, 7, 1, 4, 2, 5, 3, 6)  # [B, C, F', pt, H', ph, W', pw]
    return x.reshape(batch, x.shape[1], grid[0] * patch[0], grid[1] * patch[1], grid[2] * patch[2])


# ---------------------------------------------------------------------------------------------------
# Model
# ---------------------------------------------------------------------------------------------------


class HeliosTransformer3DModel(
    AttentionBackendMixin, ModelMixin, ConfigMixin, AttentionMixin, CacheMixin, PeftAdapterMixin
):
    """The Helios 14B video transformer, loading diffusers' `HeliosTransformer3DModel` checkpoints.

    Constructor parameters, defaults (the released config), parameter names and the fp32-kept modules are
    diffusers', and so are the mixins its pipelines and hooks call (step caches, attention backends,
    regional compile): the model drops into diffusers' `HeliosPipeline` and `HeliosPyramidPipeline`.
    `qk_norm` is recorded but, as in diffusers, q/k always get an RMSNorm across heads;
    `added_kv_proj_dim` builds projections that are loaded and never used, also as in diffusers.
    """

    _no_split_modules = ["HeliosTransformerBlock", "HeliosOutputNorm"]
    _keep_in_fp32_modules = [
        "time_embedder",
        "scale_shift_table",
        "norm1",
        "norm2",
        "norm3",
        "history_key_scale",
    ]
    _keys_to_ignore_on_load_unexpected = ["norm_added_q"]
    _skip_layerwise_casting_patterns = [
        "patch_embedding",
        "patch_short",
        "patch_mid",
        "patch_long",
        "condition_embedder",
        "norm",
    ]
    _repeated_blocks = ["HeliosTransformerBlock"]
    # diffusers' LoRA loader whose converters read this model's LoRAs (vidgen.runtime.lora).
    lora_loader = "HeliosLoraLoaderMixin"
    # Context parallelism (vidgen.runtime.parallel): the [history; noisy] sequence enters the first block
    # split into equal slices, one per rank, and stays split through every block; the rotary table (no block's
    # output) is split on the way into each block, and only the noisy tokens are gathered, after the last
    # projection. History and noisy tokens are modulated differently, so `forward` first reorders the
    # sequence (`_rank_order`) to make every slice [history slice; noisy slice]: each block then sees a
    # history of `split / ranks` tokens in front, as it does unsplit. The text stays whole on every rank:
    # it enters only through cross-attention, whose queries need no other rank's keys.
    _cp_plan = {
        "blocks.0": {"hidden_states": ContextParallelInput(split_dim=1, expected_dims=3)},
        "blocks.*": {"freqs": ContextParallelInput(split_dim=1, expected_dims=4)},
        "proj_out": ContextParallelOutput(gather_dim=1, expected_dims=3),
    }

    @register_to_config
    def __init__(
        self,
        patch_size: tuple[int, ...] = (1, 2, 2),
        num_attention_heads: int = 40,
        attention_head_dim: int = 128,
        in_channels: int = 16,
        out_channels: int = 16,
        text_dim: int = 4096,
        freq_dim: int = 256,
        ffn_dim: int = 13824,
        num_layers: int = 40,
        cross_attn_norm: bool = True,
        qk_norm: str | None = "rms_norm_across_heads",
        eps: float = 1e-6,
        added_kv_proj_dim: int | None = None,
        rope_dim: tuple[int, ...] = (44, 42, 42),
        rope_theta: float = 10000.0,
        guidance_cross_attn: bool = True,
        zero_history_timestep: bool = True,
        has_multi_term_memory_patch: bool = True,
        is_amplify_history: bool = False,
        history_scale_mode: str = "per_head",
    ) -> None:
        super().__init__()
        dim = num_attention_heads * attention_head_dim
        if sum(rope_dim) != attention_head_dim:
            raise ValueError(
                f"rope_dim {tuple(rope_dim)} must add up to attention_head_dim {attention_head_dim}"
            )
        patch = tuple(patch_size)
        self.patch_embedding = nn.Conv3d(in_channels, dim, kernel_size=patch, stride=patch)
        if has_multi_term_memory_patch:
            self.patch_short = nn.Conv3d(in_channels, dim, kernel_size=patch, stride=patch)
            mid = tuple(MID_FACTOR * p for p in patch)
            self.patch_mid = nn.Conv3d(in_channels, dim, kernel_size=mid, stride=mid)
            long = tuple(LONG_FACTOR * p for p in patch)
            self.patch_long = nn.Conv3d(in_channels, dim, kernel_size=long, stride=long)
        self.condition_embedder = HeliosConditionEmbedder(dim, freq_dim, text_dim)
        self.blocks = nn.ModuleList(
            HeliosTransformerBlock(
                dim,
                ffn_dim,
                num_attention_heads,
                cross_attn_norm,
                eps,
                added_kv_proj_dim,
                guidance_cross_attn,
                is_amplify_history,
                history_scale_mode,
            )
            for _ in range(num_layers)
        )
        self.norm_out = HeliosOutputNorm(dim, eps)
        self.proj_out = nn.Linear(dim, (out_channels or in_channels) * math.prod(patch))

    def forward(
        self,
        hidden_states: torch.Tensor,
        timestep: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        indices_hidden_states: torch.Tensor | None = None,
        indices_latents_history_short: torch.Tensor | None = None,
        indices_latents_history_mid: torch.Tensor | None = None,
        indices_latents_history_long: torch.Tensor | None = None,
        latents_history_short: torch.Tensor | None = None,
        latents_history_mid: torch.Tensor | None = None,
        latents_history_long: torch.Tensor | None = None,
        return_dict: bool = True,
        attention_kwargs: dict[str, Any] | None = None,
        cache: HeliosCache | None = None,
    ) -> Transformer2DModelOutput | tuple[torch.Tensor]:
        """Predict the noisy chunk [B, C, F, H, W] -> [B, C_out, F, H, W].

        `timestep` [B] (or one value); `encoder_hidden_states` [B, L, text_dim]; indices are frame positions
        [B or 1, frames] of the chunk and of each history term (latents [B, C, frames, H, W]); a history term
        is used when both its latents and indices are given. `attention_kwargs` is accepted for diffusers
        compatibility and ignored (no LoRA scaling here). `cache` reuses per-chunk constants between steps.
        """
        batch = hidden_states.shape[0]
        patch = tuple(self.config.patch_size)
        noisy = _patchify(self.patch_embedding, hidden_states)  # [B, F'*H'*W', D]
        grid = tuple(n // p for n, p in zip(hidden_states.shape[2:], patch, strict=True))  # (F', H', W')
        streams = self._history_streams(
            (latents_history_long, indices_latents_history_long, "patch_long", LONG_FACTOR),
            (latents_history_mid, indices_latents_history_mid, "patch_mid", MID_FACTOR),
            (latents_history_short, indices_latents_history_short, "patch_short", 1),
        )
        history = [_patchify(s.conv, s.latents) for s in streams]
        tokens = torch.cat([*history, noisy], dim=1)  # [B, S, D]
        split = tokens.shape[1] - math.prod(grid)  # history tokens come first

        # Rotary positions: every history term on the 1x grid of its latents, averaged down to its own.
        positions = [(s.indices, *s.rotary_grid, s.factor) for s in streams]
        positions.append((indices_hidden_states, grid[1], grid[2], 1))
        rotary_key = (*_flat(positions), grid[0])
        compute_rotary = partial(self._rotary, positions, grid[0], hidden_states.device)
        freqs = _cached(cache, "rotary", rotary_key, compute_rotary)

        text = _cached(
            cache,
            "text",
            (encoder_hidden_states,),
            partial(self.condition_embedder.text_embedder, encoder_hidden_states),
        )
        temb, time_rows = self._embed_time(timestep, batch, encoder_hidden_states.dtype, split > 0, cache)

        ranks = _sequence_ranks(self)
        if ranks > 1:
            tokens, freqs, split = (
                _rank_order(tokens, split, ranks),
                _rank_order(freqs, split, ranks),
                split // ranks,
            )

        for i, block in enumerate(self.blocks):
            text_kv = _cached(
                cache, f"text_kv.{i}", (encoder_hidden_states,), partial(block.attn2.key_value, text)
            )
            tokens = block(tokens, text_kv, time_rows, freqs, split)

        out = self.proj_out(self.norm_out(tokens[:, split:], temb))
        out = _unpatchify(out, grid, patch)
        return Transformer2DModelOutput(sample=out) if return_dict else (out,)

    def _history_streams(self, *terms: tuple) -> list[_HistoryStream]:
        """The history terms given (latents and indices both present), long to short."""
        streams = []
        for latents, indices, conv_name, factor in terms:
            if latents is None or indices is None:
                continue
            if not self.config.has_multi_term_memory_patch:
                raise ValueError("history latents need a model built with has_multi_term_memory_patch=True")
            conv = getattr(self, conv_name)
            # The rotary grid is the unpadded 1x token grid, as the reference takes it from the short term.
            _, p_h, p_w = self.config.patch_size
            grid = (latents.shape[-2] // p_h, latents.shape[-1] // p_w)
            streams.append(
                _HistoryStream(_pad_to_multiple(latents, conv.kernel_size), indices, conv, factor, grid)
            )
        return streams

    def _rotary(self, positions: list[tuple], frames: int, device: torch.device) -> torch.Tensor:
        """Complex rotary factors [B or 1, S, 1, head_dim/2] for the whole sequence, history first."""
        parts = []
        for indices, height, width, factor in positions:
            if indices is None:  # the chunk's frames numbered from 0, as diffusers does by default
                indices = torch.arange(frames, device=device)[None]
            table = rotary_table(
                indices.to(device), height, width, self.config.rope_dim, self.config.rope_theta
            )
            parts.append(_as_complex(_coarsen(table, factor)))
        batch = max(p.shape[0] for p in parts)
        return torch.cat([p.expand(batch, -1, -1, -1) for p in parts], dim=1)

    def _embed_time(
        self,
        timestep: torch.Tensor,
        batch: int,
        dtype: torch.dtype,
        has_history: bool,
        cache: HeliosCache | None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """-> the chunk's temb [B, D] and modulation rows [B, 2, 6, D]: (history tokens, noisy tokens)."""
        temb, rows = self.condition_embedder.embed_time(timestep.reshape(-1).expand(batch), dtype)
        if not (has_history and self.config.zero_history_timestep):
            return temb, rows[:, None].expand(-1, 2, -1, -1)
        # History tokens are clean: timestep 0, a constant. Embedded on its own as diffusers does (batching
        # it with the chunk's steps changes the matmul's rounding in bf16).
        zero = timestep.new_zeros(1)
        embed_zero = partial(self.condition_embedder.embed_time, zero, dtype)
        _, zero_rows = _cached(cache, "zero_timestep", (dtype, zero.device), embed_zero)
        return temb, torch.stack([zero_rows.expand(batch, -1, -1), rows], dim=1)


def _flat(positions: list[tuple]) -> tuple:
    return tuple(item for entry in positions for item in entry)


def _sequence_ranks(model: nn.Module) -> int:
    """How many ranks share the token sequence under context parallelism (1 without it)."""
    config = getattr(model, "_parallel_config", None)
    if config is None or config.context_parallel_config is None:
        return 1
    return config.context_parallel_config._flattened_mesh.size()


def _rank_order(x: torch.Tensor, split: int, ranks: int) -> torch.Tensor:
    """x [B, S, ...] ([history; noisy] along dim 1, `split` history tokens) reordered so that its i-th of
    `ranks` equal slices is [history slice i; noisy slice i]; the noisy slices stay in order."""
    if split == 0:
        return x
    if split % ranks or (x.shape[1] - split) % ranks:
        raise VidgenError(
            f"context parallelism cannot split {split} history and {x.shape[1] - split} video tokens "
            f"evenly over {ranks} ranks",
            "change --height/--width, or use a number of ranks that divides them",
        )
    history, noisy = x[:, :split].chunk(ranks, dim=1), x[:, split:].chunk(ranks, dim=1)
    return torch.cat([part for pair in zip(history, noisy, strict=True) for part in pair], dim=1)
