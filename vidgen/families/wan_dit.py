"""The Wan 2.1 diffusion transformer's pieces, shared by vidgen's Wan and Helios (a Wan 2.1 fine-tune) models.

One implementation of each: 3D rotary positions, patchify / unpatchify, the block's float32 modulation and
gated residuals, the rotary self-attention and the text (+ image) cross-attention with their fusable
projections, the block's layers and residual stream, the timestep / text / image embedder and the
modulated output norm. Names and shapes are diffusers' (`WanTransformerBlock`, `WanAttention`,
`WanTimeTextImageEmbedding`, ...), so both models load diffusers' checkpoints; numerics follow diffusers
0.42.1 step for step (float32 norms, modulation, residuals and rotary).
"""

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from vidgen.families.layers import (
    DispatchedAttention,
    FeedForward,
    Float32LayerNorm,
    TimestepMLP,
    apply_rotary_,
    concat_linears,
    sinusoidal_embedding,
    split_linear,
)

# ---------------------------------------------------------------------------------------------------
# Rotary positions
# ---------------------------------------------------------------------------------------------------


def rotary_dims(head_dim: int) -> tuple[int, int, int]:
    """How Wan splits a head's channels between (frame, row, column) positions: (44, 42, 42) for 128."""
    spatial = 2 * (head_dim // 6)
    return head_dim - 2 * spatial, spatial, spatial


def _axis_angles(positions: torch.Tensor, dim: int, theta: float, dtype: torch.dtype) -> torch.Tensor:
    """positions [...] -> [..., dim/2] angles in `dtype`, one per channel pair of this axis."""
    inv_freq = 1.0 / (theta ** (torch.arange(0, dim, 2, dtype=dtype)[: dim // 2] / dim))
    return positions.to(dtype)[..., None] * inv_freq.to(positions.device)


def rotary_table(
    frame_indices: torch.Tensor,
    height: int,
    width: int,
    dims: tuple[int, int, int],
    theta: float,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """[B, F] frame positions on a height x width grid -> [B, D, F, H, W] float32 (D = sum(dims)).

    Channels are the cos of the (t, y, x) angles of each channel pair (D/2), then their sin (D/2). Angles
    and their cos/sin are computed in `dtype`: Helios' reference uses float32, Wan's float64.
    """
    device = frame_indices.device
    batch, frames = frame_indices.shape
    t = _axis_angles(frame_indices.to(device), dims[0], theta, dtype)  # [B, F, dt/2]
    y = _axis_angles(torch.arange(height, device=device), dims[1], theta, dtype)  # [H, dy/2]
    x = _axis_angles(torch.arange(width, device=device), dims[2], theta, dtype)  # [W, dx/2]
    axes = (t.transpose(1, 2)[..., None, None], y.T[None, :, None, :, None], x.T[None, :, None, None, :])
    size = (batch, -1, frames, height, width)
    table = torch.cat([a.cos().expand(size) for a in axes] + [a.sin().expand(size) for a in axes], dim=1)
    return table.float()


def rotary_cos_sin(table: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """[B, D, F, H, W] cos/sin table -> cos, sin [B, F*H*W, 1, D/2], broadcasting over heads."""
    cos, sin = table.flatten(2).transpose(1, 2).chunk(2, dim=-1)
    return cos.contiguous()[:, :, None], sin.contiguous()[:, :, None]


def as_complex(table: torch.Tensor) -> torch.Tensor:
    """[B, D, F, H, W] cos/sin table -> [B, F*H*W, 1, D/2] complex64, as `apply_rotary_` takes it."""
    return torch.complex(*rotary_cos_sin(table))


# ---------------------------------------------------------------------------------------------------
# Patches
# ---------------------------------------------------------------------------------------------------


def patchify(conv: nn.Conv3d, latents: torch.Tensor) -> torch.Tensor:
    """[B, C, F, H, W] -> [B, F'*H'*W', D] tokens in (frame, row, column) order.

    Kept a convolution: a matmul over the same weights is faster on CPU (oneDNN re-lays out big conv
    weights every call) but sums in another order, and bf16 outputs then stop matching diffusers'.
    """
    return conv(latents).flatten(2).transpose(1, 2)


def unpatchify(tokens: torch.Tensor, grid: tuple[int, int, int], patch: tuple[int, int, int]) -> torch.Tensor:
    """[B, F'*H'*W', pt*ph*pw*C] -> [B, C, F'*pt, H'*ph, W'*pw]."""
    batch = tokens.shape[0]
    x = tokens.reshape(batch, *grid, *patch, -1)  # [B, F', H', W', pt, ph, pw, C]
    x = x.permute(0, 7, 1, 4, 2, 5, 3, 6)  # [B, C, F', pt, H', ph, W', pw]
    return x.reshape(batch, x.shape[1], grid[0] * patch[0], grid[1] * patch[1], grid[2] * patch[2])


# ---------------------------------------------------------------------------------------------------
# Float32 modulation and gated residuals (the reference's dtype rules)
# ---------------------------------------------------------------------------------------------------


def modulate_(
    x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor, split: int | None = None
) -> torch.Tensor:
    """In place x * (1 + scale) + shift for x [B, S, D].

    split None: shift/scale [B, 1, D] (one row for every token) or [B, S, D] (a row per token). With
    `split` (Helios), rows [B, 2, D]: row 0 serves the first `split` (history) tokens, row 1 the others,
    cheaper than the reference's per-token table and the same arithmetic.
    """
    if split is None:
        return x.mul_(1 + scale).add_(shift)
    x[:, :split].mul_(1 + scale[:, :1]).add_(shift[:, :1])
    x[:, split:].mul_(1 + scale[:, 1:]).add_(shift[:, 1:])
    return x


def gated_residual(
    x: torch.Tensor, update: torch.Tensor, gate: torch.Tensor, split: int | None = None
) -> torch.Tensor:
    """x + update * gate in float32 (gate rows as in `modulate_`), in x's dtype.

    `update` is left as it is: a step cache (pyramid attention broadcast, FasterCache) may hold it to
    return again on a later step.
    """
    if split is None:
        return (update * gate).add_(x).to(x.dtype)
    out = update * gate[:, 1:]  # a new float32 tensor (bf16 * float32 promotes, as .float() would)
    out[:, :split] = update[:, :split] * gate[:, :1]
    return out.add_(x).to(x.dtype)


def modulated_output(
    norm: nn.Module, x: torch.Tensor, table: torch.Tensor, temb: torch.Tensor
) -> torch.Tensor:
    """The last norm: norm(x) * (1 + scale) + shift in float32, in x's dtype.

    x [B, N, D]; (shift, scale) = table [1, 2, D] + temb, which is [B, D] (one timestep per sample) or
    [B, N, D] (a timestep per token).
    """
    temb = temb.float() if temb.ndim == 3 else temb.float()[:, None]  # [B, 1 or N, D]
    shift, scale = (table + temb[..., None, :]).to(x.device).unbind(-2)  # [B, 1 or N, D] each
    return (norm(x) * (1 + scale) + shift).to(x.dtype)


# ---------------------------------------------------------------------------------------------------
# Attention
# ---------------------------------------------------------------------------------------------------


class FusableAttention(DispatchedAttention):
    """Attention whose input projections can be merged, group by group, into one Linear per group.

    `fused_groups` maps each fused Linear's name to the Linears it replaces (diffusers' names); a group
    whose layers the module lacks (no image projections) is left out.
    """

    fused_groups: dict[str, tuple[str, ...]] = {}

    @property
    def fused_projections(self) -> bool:
        return any(hasattr(self, fused) for fused in self.fused_groups)

    def fuse_projections(self) -> None:
        for fused, parts in self.fused_groups.items():
            if hasattr(self, fused) or not hasattr(self, parts[0]):
                continue
            # Replacing (not keeping) the separate layers: a 14B model would otherwise hold ~10 GB twice.
            setattr(self, fused, concat_linears([getattr(self, name) for name in parts]))
            for name in parts:
                delattr(self, name)

    def unfuse_projections(self) -> None:
        for fused, parts in self.fused_groups.items():
            if not hasattr(self, fused):
                continue
            for name, layer in zip(parts, split_linear(getattr(self, fused), len(parts)), strict=True):
                setattr(self, name, layer)
            delattr(self, fused)

    def _project(self, fused: str, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The projections of x by the group `fused`'s layers, fused or not."""
        layer = getattr(self, fused, None)
        parts = self.fused_groups[fused]
        if layer is not None:
            return layer(x).chunk(len(parts), dim=-1)
        return tuple(getattr(self, name)(x) for name in parts)


class RotarySelfAttention(FusableAttention):
    """Self-attention with RMSNorm across heads on q/k and rotary positions (diffusers' `attn1`)."""

    fused_groups = {"to_qkv": ("to_q", "to_k", "to_v")}

    def __init__(self, dim: int, heads: int, eps: float) -> None:
        super().__init__()
        self.heads = heads
        self.to_q = nn.Linear(dim, dim)
        self.to_k = nn.Linear(dim, dim)
        self.to_v = nn.Linear(dim, dim)
        self.to_out = nn.ModuleList([nn.Linear(dim, dim)])  # `to_out.0` in the checkpoints
        self.norm_q = nn.RMSNorm(dim, eps=eps)
        self.norm_k = nn.RMSNorm(dim, eps=eps)

    def query_key_value(
        self, x: torch.Tensor, freqs: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x [B, S, D], freqs [B or 1, S, 1, D/heads/2] complex -> rotated q, k and v [B, S, heads, Dh]."""
        query, key, value = self._project("to_qkv", x)
        query = apply_rotary_(self.norm_q(query).unflatten(-1, (self.heads, -1)), freqs)
        key = apply_rotary_(self.norm_k(key).unflatten(-1, (self.heads, -1)), freqs)
        return query, key, value.unflatten(-1, (self.heads, -1))

    def forward(self, x: torch.Tensor, freqs: torch.Tensor) -> torch.Tensor:
        """x [B, S, D] -> [B, S, D]."""
        return self.to_out[0](self.attend(*self.query_key_value(x, freqs)))


class WanCrossAttention(FusableAttention):
    """Attention from video tokens to the projected text and, with `added_kv_proj_dim`, to the projected
    image (Wan 2.1 I2V's CLIP embeddings: a second attention of the same queries, added before `to_out`).
    Keys/values are computed apart (`key_value`, `image_key_value`), so a caller can keep them per prompt."""

    fused_groups = {"to_kv": ("to_k", "to_v"), "to_added_kv": ("add_k_proj", "add_v_proj")}
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
            self.add_k_proj = nn.Linear(added_kv_proj_dim, dim)
            self.add_v_proj = nn.Linear(added_kv_proj_dim, dim)
            self.norm_added_k = nn.RMSNorm(dim, eps=eps)

    def key_value(self, text: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """text [B, L, D] -> keys, values [B, L, H, D/H]."""
        key, value = self._project("to_kv", text)
        key = self.norm_k(key).unflatten(-1, (self.heads, -1))
        return key, value.unflatten(-1, (self.heads, -1))

    def image_key_value(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Projected image embeddings [B, I, D] -> keys, values [B, I, H, D/H]."""
        key, value = self._project("to_added_kv", image)
        key = self.norm_added_k(key).unflatten(-1, (self.heads, -1))
        return key, value.unflatten(-1, (self.heads, -1))

    def forward(
        self,
        x: torch.Tensor,
        key_value: tuple[torch.Tensor, torch.Tensor],
        image_key_value: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """x [B, N, D] -> [B, N, D]."""
        query = self.norm_q(self.to_q(x)).unflatten(-1, (self.heads, -1))
        out = self.attend(query, *key_value)
        if image_key_value is not None:
            out = out + self.attend(query, *image_key_value)
        return self.to_out[0](out)


# ---------------------------------------------------------------------------------------------------
# Block
# ---------------------------------------------------------------------------------------------------


class WanStyleBlock(nn.Module):
    """A Wan 2.1 block's layers and residual stream: modulated self-attention, cross-attention, modulated MLP.

    Subclasses give the model-facing `forward` (diffusers' hooks find the block by its class) and say how
    the two attentions are called; `residual_stream` is the one implementation of the block's maths.
    """

    def __init__(
        self,
        dim: int,
        ffn_dim: int,
        heads: int,
        cross_attn_norm: bool,
        eps: float,
        added_kv_proj_dim: int | None,
        self_attention: nn.Module,
    ) -> None:
        super().__init__()
        self.norm1 = Float32LayerNorm(dim, eps, elementwise_affine=False)
        self.attn1 = self_attention
        self.attn2 = WanCrossAttention(dim, heads, eps, added_kv_proj_dim)
        self.norm2 = Float32LayerNorm(dim, eps, elementwise_affine=True) if cross_attn_norm else None
        self.ffn = FeedForward(dim, ffn_dim, act="gelu-approximate")
        self.norm3 = Float32LayerNorm(dim, eps, elementwise_affine=False)
        self.scale_shift_table = nn.Parameter(torch.randn(1, 6, dim) / dim**0.5)

    def residual_stream(
        self,
        x: torch.Tensor,
        time_rows: torch.Tensor,
        self_attend: Callable[[torch.Tensor], torch.Tensor],
        cross_attend: Callable[[torch.Tensor], torch.Tensor],
        split: int | None = None,
        cross_start: int = 0,
    ) -> torch.Tensor:
        """x [B, S, D] -> [B, S, D].

        time_rows [B, R, 6, D]: the timestep's modulation rows, R = 1 (every token), S (a row per token) or,
        with `split`, 2 (see `modulate_`). Only tokens from `cross_start` on attend to the text.
        """
        shift, scale, gate, ffn_shift, ffn_scale, ffn_gate = (
            self.scale_shift_table[:, None] + time_rows.float()
        ).unbind(2)  # each [B, R, D], float32

        normed = modulate_(self.norm1(x), shift, scale, split).to(x.dtype)
        x = gated_residual(x, self_attend(normed), gate, split)

        tokens = x[:, cross_start:]
        normed = self.norm2(tokens).to(x.dtype) if self.norm2 is not None else tokens
        update = cross_attend(normed)
        if torch.is_grad_enabled():
            x = x.clone()  # autograd keeps the tokens norm2 (or to_q) saw; inference adds in place
        x[:, cross_start:] += update

        normed = modulate_(self.norm3(x), ffn_shift, ffn_scale, split).to(x.dtype)
        return gated_residual(x, self.ffn(normed), ffn_gate, split)


# ---------------------------------------------------------------------------------------------------
# Conditioning
# ---------------------------------------------------------------------------------------------------


class WanImageEmbedder(nn.Module):
    """CLIP image hidden states [B, I, image_dim] -> [B, I, D] (Wan 2.1 I2V): norm, GELU MLP, norm.

    With `pos_embed_seq_len` (first-last-frame models), the two images' tokens, given as 2B samples, are
    joined into one sequence per sample and take a learned position each.
    """

    def __init__(self, image_dim: int, dim: int, pos_embed_seq_len: int | None = None) -> None:
        super().__init__()
        self.norm1 = Float32LayerNorm(image_dim)
        self.ff = FeedForward(image_dim, image_dim, act="gelu", out_dim=dim)
        self.norm2 = Float32LayerNorm(dim)
        self.pos_embed = (
            nn.Parameter(torch.zeros(1, pos_embed_seq_len, image_dim)) if pos_embed_seq_len else None
        )

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        if self.pos_embed is not None:
            image = image.reshape(-1, 2 * image.shape[1], image.shape[2]) + self.pos_embed  # [B, 2I, C]
        x = self.ff(self.norm1(image).to(image.dtype))
        return self.norm2(x).to(image.dtype)


class WanConditionEmbedder(nn.Module):
    """Timestep -> (embedding, six modulation vectors); text [B, L, text_dim] -> [B, L, D]; optionally
    image embeddings -> [B, I, D]. diffusers' `condition_embedder`."""

    def __init__(
        self,
        dim: int,
        freq_dim: int,
        text_dim: int,
        image_dim: int | None = None,
        pos_embed_seq_len: int | None = None,
    ) -> None:
        super().__init__()
        self.freq_dim = freq_dim
        self.time_embedder = TimestepMLP(freq_dim, dim)
        self.time_proj = nn.Linear(dim, 6 * dim)
        # Linear -> tanh-GELU -> Linear, the layout (and parameter names) of the reference's text projection.
        self.text_embedder = TimestepMLP(text_dim, dim, act="gelu_tanh")
        self.image_embedder = (
            WanImageEmbedder(image_dim, dim, pos_embed_seq_len) if image_dim is not None else None
        )

    def embed_time(self, timesteps: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """[N] timesteps -> temb [N, D] and modulation [N, 6, D], both in `dtype` (the text's dtype)."""
        freqs = sinusoidal_embedding(timesteps, self.freq_dim, flip_sin_to_cos=True, freq_shift=0)
        # The time MLP stays float32 under bf16 loading; its output drops to the text's dtype as in diffusers.
        temb = self.time_embedder(freqs.to(self.time_embedder.linear_1.weight.dtype)).to(dtype)
        return temb, self.time_proj(F.silu(temb)).unflatten(-1, (6, -1))
