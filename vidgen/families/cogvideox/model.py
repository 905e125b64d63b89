"""CogVideoX's transformer, written for vidgen and state-dict compatible with diffusers' checkpoints.

Text and video tokens share one attention sequence (text first) but have their own adaptive norms
("experts"). Module and parameter names follow diffusers' `CogVideoXTransformer3DModel`, so the released
`transformer/` folders (CogVideoX-2b, -5b, -5b-I2V, 1.5-5B, 1.5-5B-I2V) load with `from_pretrained`.
"""

import math
from typing import Any

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

# ---------------------------------------------------------------------------------------------------
# Positions
# ---------------------------------------------------------------------------------------------------


def rotary_embedding(
    config: Any,
    latent_frames: int,
    latent_height: int,
    latent_width: int,
    device: torch.device | str | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The 3-D rotary tables the CogVideoX pipelines pass as `image_rotary_emb`.

    `config` is the transformer's config (anything with attention_head_dim, patch_size, patch_size_t,
    sample_height and sample_width). Latent sizes are those of the transformer's input; for 1.5 models
    `latent_frames` may be odd (the pipeline pads afterwards, the table rounds up like it does).
    Returns float32 (cos, sin), each [frames' * height' * width', attention_head_dim], where ' means
    after patching, values repeated pairwise (diffusers' layout).
    """
    patch, patch_t = config.patch_size, config.patch_size_t
    grid_h, grid_w = latent_height // patch, latent_width // patch
    base_h, base_w = config.sample_height // patch, config.sample_width // patch
    if patch_t is None:
        # 1.0 models: the grid is fitted into the training grid (resize + centre crop), as positions
        # the model saw in training.
        pos_t, pos_h, pos_w = _crop_resize_positions(latent_frames, grid_h, grid_w, base_h, base_w, device)
    else:
        # 1.5 models: plain integer positions ("slice" grid), bounded by the sample size.
        frames = math.ceil(latent_frames / patch_t)
        if grid_h > base_h or grid_w > base_w:
            raise ValueError(
                f"latent grid {latent_width}x{latent_height} is larger than the model's sample size "
                f"{config.sample_width}x{config.sample_height}, which bounds its rotary positions"
            )
        pos_t, pos_h, pos_w = (
            torch.arange(n, dtype=torch.float32, device=device) for n in (frames, grid_h, grid_w)
        )
    return _rotary_tables(config.attention_head_dim, pos_t, pos_h, pos_w)


def _crop_resize_positions(
    frames: int, grid_h: int, grid_w: int, base_h: int, base_w: int, device: torch.device | str | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    # Fit the grid's aspect ratio into the base grid; float expressions are kept in diffusers' order
    # (and Python's round) so the positions are bit-identical to the pipeline's.
    if grid_h / grid_w > base_h / base_w:
        resized_h, resized_w = base_h, int(round(base_h / grid_h * grid_w))
    else:
        resized_h, resized_w = int(round(base_w / grid_w * grid_h)), base_w
    top = int(round((base_h - resized_h) / 2.0))
    left = int(round((base_w - resized_w) / 2.0))
    bottom, right = top + resized_h, left + resized_w

    kwargs = {"dtype": torch.float32, "device": device}
    pos_h = torch.linspace(top, bottom * (grid_h - 1) / grid_h, grid_h, **kwargs)
    pos_w = torch.linspace(left, right * (grid_w - 1) / grid_w, grid_w, **kwargs)
    pos_t = torch.arange(frames, **kwargs)  # diffusers' linspace(0, F * (F - 1) / F, F): the same integers
    return pos_t, pos_h, pos_w


def _rotary_tables(
    head_dim: int,
    pos_t: torch.Tensor,
    pos_h: torch.Tensor,
    pos_w: torch.Tensor,
    theta: float = 10000.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    # A head's channels: a quarter rotate with time, three eighths each with height and width.
    if head_dim % 16:
        raise ValueError(f"3-D rotary positions need attention_head_dim divisible by 16, got {head_dim}")
    dims = (head_dim // 4, head_dim // 8 * 3, head_dim // 8 * 3)
    angles = []
    for dim, pos in zip(dims, (pos_t, pos_h, pos_w), strict=True):
        inv_freq = 1.0 / (theta ** (torch.arange(0, dim, 2, dtype=torch.float32, device=pos.device) / dim))
        angles.append(torch.outer(pos, inv_freq))  # [n, dim / 2]
    per_t, per_h, per_w = _per_token(*angles)
    grid = torch.cat([per_t, per_h, per_w], dim=-1)  # [F * H * W, head_dim / 2]
    return grid.cos().repeat_interleave(2, dim=1), grid.sin().repeat_interleave(2, dim=1)


def sincos_positions(
    dim: int,
    frames: int,
    height: int,
    width: int,
    spatial_scale: float,
    temporal_scale: float,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Fixed 3-D sin-cos position embedding (CogVideoX-2b): [frames * height * width, dim] float64.

    Channels are [time (dim/4), width (3dim/8), height (3dim/8)], each half sines, half cosines.
    Positions are divided in float32 and the angles taken in float64, matching diffusers' rounding.
    """
    if dim % 16:
        raise ValueError(f"sin-cos positions need an inner dim divisible by 16, got {dim}")
    time_dim, axis_dim = dim // 4, 3 * dim // 8
    pos_t = torch.arange(frames, dtype=torch.float32, device=device) / temporal_scale
    pos_h = torch.arange(height, dtype=torch.float32, device=device) / spatial_scale
    pos_w = torch.arange(width, dtype=torch.float32, device=device) / spatial_scale
    per_t, per_h, per_w = _per_token(
        _sincos(time_dim, pos_t), _sincos(axis_dim, pos_h), _sincos(axis_dim, pos_w)
    )
    return torch.cat([per_t, per_w, per_h], dim=-1)


def _per_token(
    per_frame: torch.Tensor, per_row: torch.Tensor, per_column: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Axis features [F, a], [H, b], [W, c] repeated over the (frame, row, column) token grid: [F*H*W, ·]."""
    size = (len(per_frame), len(per_row), len(per_column))
    return (
        per_frame[:, None, None].expand(*size, -1).flatten(0, 2),
        per_row[None, :, None].expand(*size, -1).flatten(0, 2),
        per_column[None, None, :].expand(*size, -1).flatten(0, 2),
    )


def _sincos(dim: int, positions: torch.Tensor) -> torch.Tensor:
    # [n] -> [n, dim]; float64 except on MPS, which has none.
    dtype = torch.float32 if positions.device.type == "mps" else torch.float64
    omega = torch.arange(dim // 2, dtype=dtype, device=positions.device) / (dim / 2.0)
    angles = torch.outer(positions.to(dtype), 1.0 / 10000**omega)
    return torch.cat([angles.sin(), angles.cos()], dim=1)


def _rotary_as_complex(cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    # The tables repeat every value for a channel pair; one complex number per pair multiplies in one op.
    return torch.complex(cos[:, 0::2].float(), sin[:, 0::2].float())[:, None]  # [N, 1, D/2]


# ---------------------------------------------------------------------------------------------------
# Layers
# ---------------------------------------------------------------------------------------------------


def patchify(video: torch.Tensor, patch: int, patch_t: int) -> torch.Tensor:
    """[B, F, C, H, W] -> [B, F/pt * H/p * W/p, C * pt * p * p], tokens in (frame, row, column) order."""
    batch, frames, channels, height, width = video.shape
    video = video.reshape(
        batch, frames // patch_t, patch_t, channels, height // patch, patch, width // patch, patch
    )
    return video.permute(0, 1, 4, 6, 3, 2, 5, 7).flatten(4).flatten(1, 3)


def unpatchify(
    tokens: torch.Tensor, frames: int, height: int, width: int, patch: int, patch_t: int
) -> torch.Tensor:
    """[B, F/pt * H/p * W/p, C * pt * p * p] -> [B, F, C, H, W] (inverse of `patchify`)."""
    batch = tokens.shape[0]
    tokens = tokens.reshape(
        batch, frames // patch_t, height // patch, width // patch, -1, patch_t, patch, patch
    )
    return tokens.permute(0, 1, 5, 4, 2, 6, 3, 7).reshape(batch, frames, -1, height, width)


class PatchConv(nn.Conv2d):
    """The 1.0 checkpoints' patch conv (kernel = stride = p, weight [D, C, p, p]) run as a matmul on
    flattened patches: the output comes out in token order, without transposing the D-wide result."""

    def forward(self, patches: torch.Tensor) -> torch.Tensor:
        """[B, N, C * p * p] -> [B, N, D]"""
        return F.linear(patches, self.weight.flatten(1), self.bias)


class CogVideoXPatchEmbed(nn.Module):
    """Projects text embeddings and video patches to the model width and adds positions.

    `positions` is "sincos" (fixed table added to video tokens), "learned" (checkpoint table added to
    text and video tokens) or "rotary" (nothing added here; attention rotates q/k). A learned table
    fits one input grid, `learned_grid`; at other frame counts a learned-position model adds the
    sin-cos table instead, as diffusers' does (its text rows are zeros).
    """

    def __init__(
        self,
        in_channels: int,
        inner_dim: int,
        text_embed_dim: int,
        patch_size: int,
        patch_size_t: int | None,
        patch_bias: bool,
        positions: str,
        position_grid: tuple[int, int, int],
        max_text_seq_length: int,
        spatial_interpolation_scale: float,
        temporal_interpolation_scale: float,
        learned_grid: tuple[int, int, int] | None = None,
    ) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.patch_size_t = patch_size_t or 1
        self.position_grid = position_grid
        self.learned_grid = learned_grid
        self.spatial_scale = spatial_interpolation_scale
        self.temporal_scale = temporal_interpolation_scale
        self.positions = positions
        if patch_size_t is None:
            self.proj = PatchConv(in_channels, inner_dim, patch_size, stride=patch_size, bias=patch_bias)
        else:
            # 1.5 checkpoints: a linear layer that always has a bias (diffusers ignores patch_bias here).
            self.proj = nn.Linear(in_channels * patch_size * patch_size * patch_size_t, inner_dim)
        self.text_proj = nn.Linear(text_embed_dim, inner_dim)

        if positions != "rotary":
            table = sincos_positions(inner_dim, *position_grid, self.spatial_scale, self.temporal_scale)
        if positions == "sincos":
            # Recomputable, so kept out of the state dict; float32 halves diffusers' float64 buffer.
            self.register_buffer("sincos_table", table.float(), persistent=False)
        elif positions == "learned":
            # A checkpoint tensor [1, text + video tokens, D]; initialised (and stored) like diffusers'.
            text_rows = table.new_zeros(max_text_seq_length, inner_dim)
            self.register_buffer("pos_embedding", torch.cat([text_rows, table])[None])

    def forward(self, text: torch.Tensor, video: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """text [B, T, text_dim], video [B, F, C, H, W] -> text [B, T, D], video tokens [B, N, D]."""
        frames, height, width = video.shape[1], video.shape[3], video.shape[4]
        text = self.text_proj(text)
        # Modules are called (not their weights read) so offloading hooks see every use.
        video = self.proj(patchify(video, self.patch_size, self.patch_size_t))
        grid = (frames // self.patch_size_t, height // self.patch_size, width // self.patch_size)
        if self.positions == "learned" and grid == self.learned_grid:
            table = self.pos_embedding.to(video.dtype)
            text_len = text.shape[1]
            text, video = text + table[:, :text_len], video + table[:, text_len:]
        elif self.positions != "rotary":
            video = video + self._sincos_table(grid, video.device).to(video.dtype)
        return text, video

    def _sincos_table(self, grid: tuple[int, int, int], device: torch.device) -> torch.Tensor:
        if self.positions == "sincos" and grid == self.position_grid:
            return self.sincos_table
        dim = self.text_proj.out_features
        return sincos_positions(dim, *grid, self.spatial_scale, self.temporal_scale, device=device)


class ModulatedLayerNorm(nn.Module):
    """LayerNorm with a timestep-dependent shift/scale and residual gate, one set per modality."""

    def __init__(self, time_embed_dim: int, dim: int, elementwise_affine: bool, eps: float) -> None:
        super().__init__()
        self.linear = nn.Linear(time_embed_dim, 6 * dim)
        self.norm = nn.LayerNorm(dim, eps=eps, elementwise_affine=elementwise_affine)

    def forward(
        self, text: torch.Tensor, video: torch.Tensor, temb: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Returns the normed, modulated text and video and their gates ([B, 1, D] each)."""
        modulation = self.linear(F.silu(temb))[:, None]  # [B, 1, 6D]
        shift, scale, gate, text_shift, text_scale, text_gate = modulation.chunk(6, dim=-1)
        video = torch.addcmul(shift, self.norm(video), 1 + scale)
        text = torch.addcmul(text_shift, self.norm(text), 1 + text_scale)
        return text, video, text_gate, gate


class JointSelfAttention(DispatchedAttention):
    """Self-attention over [text; video] tokens with per-head LayerNorm on q/k and rotary on video."""

    def __init__(self, dim: int, heads: int, head_dim: int, bias: bool) -> None:
        super().__init__()
        self.heads = heads
        self.to_q = nn.Linear(dim, heads * head_dim, bias=bias)
        self.to_k = nn.Linear(dim, heads * head_dim, bias=bias)
        self.to_v = nn.Linear(dim, heads * head_dim, bias=bias)
        self.to_qkv: nn.Linear | None = None
        self.norm_q = nn.LayerNorm(head_dim, eps=1e-6)
        self.norm_k = nn.LayerNorm(head_dim, eps=1e-6)
        # A list only so the checkpoint name stays `to_out.0`.
        self.to_out = nn.ModuleList([nn.Linear(heads * head_dim, dim)])

    def forward(self, tokens: torch.Tensor, text_len: int, rotary: torch.Tensor | None) -> torch.Tensor:
        """tokens [B, T + N, D] -> [B, T + N, D]; rotary (complex [N, 1, head_dim/2]) rotates video q/k."""
        query, key, value = self._project(tokens)  # each [B, S, heads, head_dim]
        query, key = self.norm_q(query), self.norm_k(key)
        if rotary is not None:
            # In place on the fresh norm outputs: only video tokens have positions.
            apply_rotary_(query[:, text_len:], rotary)
            apply_rotary_(key[:, text_len:], rotary)
        return self.to_out[0](self.attend(query, key, value))

    def _project(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if self.to_qkv is not None:
            return self.to_qkv(tokens).unflatten(-1, (3, self.heads, -1)).unbind(2)
        return tuple(
            proj(tokens).unflatten(-1, (self.heads, -1)) for proj in (self.to_q, self.to_k, self.to_v)
        )

    @property
    def fused_projections(self) -> bool:
        return self.to_qkv is not None

    def fuse_projections(self) -> None:
        """Replace to_q/to_k/to_v by one to_qkv layer (one matmul instead of three)."""
        if self.to_qkv is None:
            self.to_qkv = concat_linears([self.to_q, self.to_k, self.to_v])
            self.to_q = self.to_k = self.to_v = None

    def unfuse_projections(self) -> None:
        """Split to_qkv back into to_q/to_k/to_v, restoring the checkpoint's state-dict names."""
        if self.to_qkv is not None:
            self.to_q, self.to_k, self.to_v = split_linear(self.to_qkv, 3)
            self.to_qkv = None


class CogVideoXBlock(nn.Module):
    """Modulated norm -> joint attention -> gated residual, then the same with a feed-forward."""

    def __init__(
        self,
        dim: int,
        heads: int,
        head_dim: int,
        time_embed_dim: int,
        dropout: float,
        activation_fn: str,
        attention_bias: bool,
        norm_elementwise_affine: bool,
        norm_eps: float,
    ) -> None:
        super().__init__()
        self.norm1 = ModulatedLayerNorm(time_embed_dim, dim, norm_elementwise_affine, norm_eps)
        self.attn1 = JointSelfAttention(dim, heads, head_dim, attention_bias)
        self.norm2 = ModulatedLayerNorm(time_embed_dim, dim, norm_elementwise_affine, norm_eps)
        self.ff = FeedForward(dim, 4 * dim, activation_fn, dropout)
        # diffusers' CogVideoX feed-forward ends with a second dropout (`net.3`, no weights).
        self.ff_dropout = nn.Dropout(dropout)

    def forward(
        self,
        encoder_hidden_states: torch.Tensor,
        hidden_states: torch.Tensor,
        temb: torch.Tensor,
        rotary: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """text [B, T, D], video [B, N, D] -> (text, video), same shapes.

        The parameters carry diffusers' names because its step-cache hooks look them up by name.
        """
        text, video = encoder_hidden_states, hidden_states
        text_len = text.shape[1]
        normed_text, normed_video, text_gate, video_gate = self.norm1(text, video, temb)
        out = self.attn1(torch.cat([normed_text, normed_video], dim=1), text_len, rotary)
        text = torch.addcmul(text, text_gate, out[:, :text_len])
        video = torch.addcmul(video, video_gate, out[:, text_len:])

        normed_text, normed_video, text_gate, video_gate = self.norm2(text, video, temb)
        out = self.ff_dropout(self.ff(torch.cat([normed_text, normed_video], dim=1)))
        text = torch.addcmul(text, text_gate, out[:, :text_len])
        video = torch.addcmul(video, video_gate, out[:, text_len:])
        return text, video


register_block(CogVideoXBlock, video_output=1, text_output=0)  # it returns (text, video)


class OutputNorm(nn.Module):
    """Final adaptive LayerNorm on video tokens: shift and scale (in that order) from the timestep."""

    def __init__(self, time_embed_dim: int, dim: int, elementwise_affine: bool, eps: float) -> None:
        super().__init__()
        self.linear = nn.Linear(time_embed_dim, 2 * dim)
        self.norm = nn.LayerNorm(dim, eps=eps, elementwise_affine=elementwise_affine)

    def forward(self, x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        shift, scale = self.linear(F.silu(temb))[:, None].chunk(2, dim=-1)
        return torch.addcmul(shift, self.norm(x), 1 + scale)


# ---------------------------------------------------------------------------------------------------
# Model
# ---------------------------------------------------------------------------------------------------


class CogVideoXTransformer3DModel(
    AttentionBackendMixin, ModelMixin, ConfigMixin, AttentionMixin, CacheMixin, PeftAdapterMixin
):
    """The CogVideoX denoiser: [B, F, C, H, W] latents + T5 text embeddings + timestep -> [B, F, C_out, H, W].

    Constructor parameters, their defaults and the state dict are diffusers'
    `CogVideoXTransformer3DModel`'s, and so are the mixins diffusers' pipelines and hooks call (step
    caches, attention backends, regional compile): the model drops into diffusers' `CogVideoXPipeline`.
    Beyond diffusers: rotary tables are computed from the input when
    not passed, fused QKV drops the separate projections, and unsupported sizes raise ValueError early.
    """

    # diffusers records a component's class in model_index.json by its module path, and takes a path whose
    # folder shares a name with one of its pipeline folders (helios, wan) for a diffusers pipeline module:
    # a saved pipeline would then not load. The public home of vidgen's transformers is vidgen.models.
    __module__ = "vidgen.models"

    _supports_gradient_checkpointing = True
    _no_split_modules = ["CogVideoXBlock", "CogVideoXPatchEmbed"]
    _skip_layerwise_casting_patterns = ["patch_embed", "norm"]
    _repeated_blocks = ["CogVideoXBlock"]
    # diffusers' LoRA loader whose converters read this model's LoRAs (vidgen.runtime.lora).
    lora_loader = "CogVideoXLoraLoaderMixin"
    # Context parallelism (vidgen.runtime.parallel): every rank takes an equal slice of the text tokens and of
    # the video tokens (with their rotary rows) into the first block and keeps it through all blocks;
    # the joint attention sees each rank's [text slice; video slice], and the dispatcher's Ulysses or
    # ring attention lets every query see every key. Splitting the text too (rather than replicating
    # it) keeps each token on exactly one rank, which the all-to-all needs: a replicated text would be
    # attended to once per rank. Only the video is gathered, after the last projection; the time
    # embedding is per sample and stays whole on every rank.
    _cp_plan = {
        "transformer_blocks.0": {
            "encoder_hidden_states": ContextParallelInput(split_dim=1, expected_dims=3),
            "hidden_states": ContextParallelInput(split_dim=1, expected_dims=3),
        },
        # The rotary table is no block's output, so each block takes its slice on the way in.
        "transformer_blocks.*": {"rotary": ContextParallelInput(split_dim=0, expected_dims=3)},
        "proj_out": ContextParallelOutput(gather_dim=1, expected_dims=3),
    }

    @register_to_config
    def __init__(
        self,
        num_attention_heads: int = 30,
        attention_head_dim: int = 64,
        in_channels: int = 16,
        out_channels: int | None = 16,
        flip_sin_to_cos: bool = True,
        freq_shift: int = 0,
        time_embed_dim: int = 512,
        ofs_embed_dim: int | None = None,
        text_embed_dim: int = 4096,
        num_layers: int = 30,
        dropout: float = 0.0,
        attention_bias: bool = True,
        sample_width: int = 90,
        sample_height: int = 60,
        sample_frames: int = 49,
        patch_size: int = 2,
        patch_size_t: int | None = None,
        temporal_compression_ratio: int = 4,
        max_text_seq_length: int = 226,
        activation_fn: str = "gelu-approximate",
        timestep_activation_fn: str = "silu",
        norm_elementwise_affine: bool = True,
        norm_eps: float = 1e-5,
        spatial_interpolation_scale: float = 1.875,
        temporal_interpolation_scale: float = 1.0,
        use_rotary_positional_embeddings: bool = False,
        use_learned_positional_embeddings: bool = False,
        patch_bias: bool = True,
    ) -> None:
        super().__init__()
        inner_dim = num_attention_heads * attention_head_dim
        positions = _position_kind(use_rotary_positional_embeddings, use_learned_positional_embeddings)
        if positions != "rotary" and patch_size_t is not None:
            raise ValueError("patch_size_t (CogVideoX 1.5) needs use_rotary_positional_embeddings=True")
        # sample_frames counts video frames (49), not latent ones; the position grid is in tokens.
        self.position_grid = (
            (sample_frames - 1) // temporal_compression_ratio + 1,
            sample_height // patch_size,
            sample_width // patch_size,
        )

        self.patch_embed = CogVideoXPatchEmbed(
            in_channels=in_channels,
            inner_dim=inner_dim,
            text_embed_dim=text_embed_dim,
            patch_size=patch_size,
            patch_size_t=patch_size_t,
            patch_bias=patch_bias,
            positions=positions,
            position_grid=self.position_grid,
            max_text_seq_length=max_text_seq_length,
            spatial_interpolation_scale=spatial_interpolation_scale,
            temporal_interpolation_scale=temporal_interpolation_scale,
            # diffusers adds the checkpoint's table only when the input, counted in video frames
            # ((latent frames - 1) * compression + 1), has exactly sample_frames.
            learned_grid=self.position_grid
            if (sample_frames - 1) % temporal_compression_ratio == 0
            else None,
        )
        self.embedding_dropout = nn.Dropout(dropout)
        self.time_embedding = TimestepMLP(inner_dim, time_embed_dim, act=timestep_activation_fn)
        self.ofs_embedding = (
            TimestepMLP(ofs_embed_dim, ofs_embed_dim, act=timestep_activation_fn) if ofs_embed_dim else None
        )
        self.transformer_blocks = nn.ModuleList(
            CogVideoXBlock(
                inner_dim,
                num_attention_heads,
                attention_head_dim,
                time_embed_dim,
                dropout,
                activation_fn,
                attention_bias,
                norm_elementwise_affine,
                norm_eps,
            )
            for _ in range(num_layers)
        )
        self.norm_final = nn.LayerNorm(inner_dim, norm_eps, norm_elementwise_affine)
        self.norm_out = OutputNorm(time_embed_dim, inner_dim, norm_elementwise_affine, norm_eps)
        patch_volume = patch_size * patch_size * (patch_size_t or 1)
        self.proj_out = nn.Linear(inner_dim, patch_volume * out_channels)
        self.gradient_checkpointing = False

    def fuse_qkv_projections(self) -> None:
        """Use one q/k/v matmul per block. The state dict then has `attn1.to_qkv.*` instead of
        `to_q/to_k/to_v`; `unfuse_qkv_projections()` (diffusers' AttentionMixin's) restores them, to
        call before saving a checkpoint. As in diffusers, `original_attn_processors` keeps the
        processors from before."""
        self.original_attn_processors = self.attn_processors
        super().fuse_qkv_projections()

    def rotary_embedding(
        self,
        latent_frames: int,
        latent_height: int,
        latent_width: int,
        device: torch.device | str | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """This model's rotary tables for a latent size (see the module-level `rotary_embedding`)."""
        return rotary_embedding(self.config, latent_frames, latent_height, latent_width, device)

    def forward(
        self,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        timestep: int | float | torch.Tensor,
        timestep_cond: torch.Tensor | None = None,
        ofs: int | float | torch.Tensor | None = None,
        image_rotary_emb: tuple[torch.Tensor, torch.Tensor] | None = None,
        attention_kwargs: dict[str, Any] | None = None,
        return_dict: bool = True,
    ) -> Transformer2DModelOutput | tuple[torch.Tensor]:
        """Denoiser output for latents `hidden_states` [B, F, C, H, W] and text [B, T, text_embed_dim].

        `timestep` (and `ofs`, required by 1.5-I2V) may be a number or a [B] / [1] tensor.
        `image_rotary_emb` is (cos, sin) as from `rotary_embedding`; computed here when the config uses
        rotary positions and it is None. `attention_kwargs` is accepted for diffusers compatibility and
        ignored (no attention processors or LoRA scaling here). Returns [B, F, C_out, H, W].
        """
        frames, height, width = hidden_states.shape[1], hidden_states.shape[3], hidden_states.shape[4]
        self._check_input(frames, height, width, encoder_hidden_states.shape[1], timestep_cond, ofs)
        temb = self._embed_time(timestep, ofs, hidden_states)  # [B, time_embed_dim]

        text, video = self.patch_embed(encoder_hidden_states, hidden_states)  # [B, T, D], [B, N, D]
        text, video = self.embedding_dropout(text), self.embedding_dropout(video)

        if image_rotary_emb is None and self.config.use_rotary_positional_embeddings:
            image_rotary_emb = self.rotary_embedding(frames, height, width, device=video.device)
        rotary = None if image_rotary_emb is None else _rotary_as_complex(*image_rotary_emb).to(video.device)

        for block in self.transformer_blocks:
            if torch.is_grad_enabled() and self.gradient_checkpointing:
                text, video = self._gradient_checkpointing_func(block, text, video, temb, rotary)
            else:
                text, video = block(text, video, temb, rotary)

        video = self.norm_out(self.norm_final(video), temb)
        video = self.proj_out(video)  # [B, N, pt * p * p * C_out]
        patch, patch_t = self.config.patch_size, self.config.patch_size_t or 1
        output = unpatchify(video, frames, height, width, patch, patch_t)
        return Transformer2DModelOutput(sample=output) if return_dict else (output,)

    def _embed_time(
        self,
        timestep: int | float | torch.Tensor,
        ofs: int | float | torch.Tensor | None,
        hidden_states: torch.Tensor,
    ) -> torch.Tensor:
        config, device, dtype = self.config, hidden_states.device, hidden_states.dtype
        steps = _as_1d(timestep, device).expand(hidden_states.shape[0])
        inner_dim = config.num_attention_heads * config.attention_head_dim
        # Sinusoids are float32; cast to the activations' dtype, as diffusers does, before the MLP.
        features = sinusoidal_embedding(steps, inner_dim, config.flip_sin_to_cos, config.freq_shift)
        temb = self.time_embedding(features.to(dtype))
        if self.ofs_embedding is not None:
            features = sinusoidal_embedding(
                _as_1d(ofs, device), config.ofs_embed_dim, config.flip_sin_to_cos, config.freq_shift
            )
            temb = temb + self.ofs_embedding(features.to(dtype))  # ofs may be [1]: broadcast over the batch
        return temb

    def _check_input(
        self,
        frames: int,
        height: int,
        width: int,
        text_len: int,
        timestep_cond: torch.Tensor | None,
        ofs: int | float | torch.Tensor | None,
    ) -> None:
        config = self.config
        patch, patch_t = config.patch_size, config.patch_size_t or 1
        if height % patch or width % patch:
            raise ValueError(f"latent width and height must be multiples of {patch}, got {width}x{height}")
        if frames % patch_t:
            raise ValueError(
                f"latent frames must be a multiple of patch_size_t {patch_t}, got {frames}; "
                "pad the latents like the CogVideoX 1.5 pipelines do"
            )
        # Other frame counts run, as in diffusers (with sin-cos positions instead of the checkpoint's: the
        # CLI refuses them before loading); other sizes and text lengths diffusers' class cannot take.
        size = (config.sample_height, config.sample_width, config.max_text_seq_length)
        if config.use_learned_positional_embeddings and (height, width, text_len) != size:
            raise ValueError(
                "this model's learned positional embeddings fix its input size to "
                f"{config.sample_width}x{config.sample_height} latents and {config.max_text_seq_length} text "
                f"tokens (with CogVideoX's VAE: {config.sample_width * 8}x{config.sample_height * 8}); "
                f"got {width}x{height} latents and {text_len} text tokens"
            )
        if timestep_cond is not None:
            raise ValueError("timestep_cond is not supported: CogVideoX has no timestep-condition projection")
        if self.ofs_embedding is not None and ofs is None:
            raise ValueError("this model (CogVideoX 1.5 I2V) needs `ofs`; its pipeline passes 2.0")


def _position_kind(rotary: bool, learned: bool) -> str:
    if learned and not rotary:
        raise ValueError("use_learned_positional_embeddings needs use_rotary_positional_embeddings=True")
    if learned:
        return "learned"
    return "rotary" if rotary else "sincos"


def _as_1d(value: int | float | torch.Tensor, device: torch.device) -> torch.Tensor:
    if not torch.is_tensor(value):
        return torch.tensor([value], device=device)
    return value.to(device).reshape(-1)
