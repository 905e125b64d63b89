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
from vidgen.families.layers import AttentionBackendMixin, Float32LayerNorm, register_block
from vidgen.families.wan_dit import (
    RotarySelfAttention,
    WanConditionEmbedder,
    WanStyleBlock,
    as_complex,
    modulated_output,
    patchify,
    rotary_table,
    unpatchify,
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


# ---------------------------------------------------------------------------------------------------
# Layers
# ---------------------------------------------------------------------------------------------------


class HeliosSelfAttention(RotarySelfAttention):
    """Wan's rotary self-attention with an optional learned gain on the history tokens' keys."""

    def __init__(
        self,
        dim: int,
        heads: int,
        eps: float,
        amplify_history: bool = False,
        history_scale_mode: str = "per_head",
    ) -> None:
        super().__init__(dim, heads, eps)
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
        query, key, value = self.query_key_value(x, freqs)  # [B, S, H, Dh] each
        if hasattr(self, "history_key_scale") and split > 0:
            key[:, :split].mul_(self._history_key_gain())
        return self.to_out[0](self.attend(query, key, value))

    def _history_key_gain(self) -> torch.Tensor:
        gain = 1.0 + torch.sigmoid(self.history_key_scale) * (MAX_HISTORY_KEY_GAIN - 1.0)
        return gain.view(1, 1, -1, 1) if self.history_scale_mode == "per_head" else gain


class HeliosTransformerBlock(WanStyleBlock):
    """Wan's block over [history; noisy] tokens: history and noisy tokens modulated by their own timestep
    rows, and with guidance_cross_attn only the noisy tokens attend to the text."""

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
        self_attention = HeliosSelfAttention(dim, heads, eps, is_amplify_history, history_scale_mode)
        super().__init__(dim, ffn_dim, heads, cross_attn_norm, eps, added_kv_proj_dim, self_attention)
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

        `hidden_states` is diffusers' name, which its step-cache hooks look up. The image projections a
        config with `added_kv_proj_dim` builds are loaded and never used, as in diffusers.
        """
        return self.residual_stream(
            hidden_states,
            time_rows,
            partial(self.attn1, freqs=freqs, split=split),
            partial(self.attn2, key_value=text_key_value),
            split,
            cross_start=split if self.guidance_cross_attn else 0,
        )


register_block(HeliosTransformerBlock)


class HeliosOutputNorm(nn.Module):
    """Float32 LayerNorm modulated by the noisy chunk's timestep embedding."""

    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.scale_shift_table = nn.Parameter(torch.randn(1, 2, dim) / dim**0.5)
        self.norm = Float32LayerNorm(dim, eps, elementwise_affine=False)

    def forward(self, x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        """x [B, N, D], temb [B, D] -> [B, N, D]."""
        return modulated_output(self.norm, x, self.scale_shift_table, temb)


class _HistoryStream(NamedTuple):
    latents: torch.Tensor  # [B, C, F, H, W], padded to the patch embedding's kernel
    indices: torch.Tensor  # [B or 1, F] frame positions
    conv: nn.Conv3d
    factor: int  # token grid coarser than the 1x (short) grid by this much per axis
    rotary_grid: tuple[int, int]  # the 1x token grid (height, width) the rotary table is built on


def history_token_count(frames: tuple[int, int, int], height: int, width: int, patch: tuple[int, ...]) -> int:
    """Tokens the [long, mid, short] history terms of `frames` latent frames each, on a `height` x `width`
    latent grid, patch to (the long and mid terms' patches are LONG_FACTOR and MID_FACTOR times larger)."""
    total = 0
    for count, factor in zip(frames, (LONG_FACTOR, MID_FACTOR, 1), strict=True):
        p_t, p_h, p_w = (factor * p for p in patch)
        total += (count // p_t) * (height // p_h) * (width // p_w)
    return total


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

    # diffusers records a component's class in model_index.json by its module path, and takes a path whose
    # folder shares a name with one of its pipeline folders (helios, wan) for a diffusers pipeline module:
    # a saved pipeline would then not load. The public home of vidgen's transformers is vidgen.models.
    __module__ = "vidgen.models"

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
        self.condition_embedder = WanConditionEmbedder(dim, freq_dim, text_dim)
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
        noisy = patchify(self.patch_embedding, hidden_states)  # [B, F'*H'*W', D]
        grid = tuple(n // p for n, p in zip(hidden_states.shape[2:], patch, strict=True))  # (F', H', W')
        streams = self._history_streams(
            (latents_history_long, indices_latents_history_long, "patch_long", LONG_FACTOR),
            (latents_history_mid, indices_latents_history_mid, "patch_mid", MID_FACTOR),
            (latents_history_short, indices_latents_history_short, "patch_short", 1),
        )
        history = [patchify(s.conv, s.latents) for s in streams]
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
        out = unpatchify(out, grid, patch)
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
            parts.append(as_complex(_coarsen(table, factor)))
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
