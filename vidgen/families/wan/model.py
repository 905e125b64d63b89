"""Wan transformer: vidgen's implementation, loading diffusers' `WanTransformer3DModel` checkpoints.

One class for every released Wan 2.1 / 2.2 transformer: T2V 1.3B and 14B, I2V 14B (CLIP image embeddings
through `image_dim` / `added_kv_proj_dim`: a second cross-attention of the same queries), the 2.2 A14B
experts (the 14B config, one model per expert) and TI2V-5B (48 channels; a timestep per token). Its layers
are the ones Helios shares (`vidgen.families.wan_dit`).

Numerics follow diffusers 0.42.1 step for step (float32 norms, modulation, residuals; the rotary angles in
float64 as diffusers computes them; the time MLP and scale/shift tables kept in float32 under bf16
loading). Beyond it:
- the blocks split the [image; text] context at the image's token count, where diffusers assumes "all but
  the last 512 tokens", which mis-splits a text of another length silently (the views are diffusers',
  whose strides its bf16 matmuls round by);
- `fuse_qkv_projections` replaces q/k/v (cross: k/v, image k/v) by one Linear instead of keeping both;
- the rotary table is computed for the input's size, with no `rope_max_seq_len` bound (kept in the config).
Inference first: the residual stream is updated in place where that saves a copy.
"""

import dataclasses
import math
from functools import partial
from typing import Any

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.hooks import SeaCacheConfig
from diffusers.loaders import PeftAdapterMixin
from diffusers.models._modeling_parallel import ContextParallelInput, ContextParallelOutput
from diffusers.models.attention import AttentionMixin
from diffusers.models.cache_utils import CacheMixin
from diffusers.models.modeling_outputs import Transformer2DModelOutput
from diffusers.models.modeling_utils import ModelMixin
from diffusers.utils import apply_lora_scale
from torch import nn

from vidgen.families.layers import AttentionBackendMixin, Float32LayerNorm, register_block
from vidgen.families.wan_dit import (
    RotarySelfAttention,
    WanConditionEmbedder,
    WanStyleBlock,
    modulated_output,
    patchify,
    rotary_cos_sin,
    rotary_dims,
    rotary_table,
    unpatchify,
)


class WanRotaryEmbedding(nn.Module):
    """Rotary (cos, sin) for the tokens of a latent video, frames, rows and columns numbered from 0.

    A module of its own (diffusers' `rope`) so that context parallelism splits its outputs by token.
    """

    def __init__(self, head_dim: int, patch_size: tuple[int, int, int], theta: float = 10000.0) -> None:
        super().__init__()
        self.dims = rotary_dims(head_dim)
        self.patch_size = tuple(patch_size)
        self.theta = theta

    def forward(self, hidden_states: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Latents [B, C, F, H, W] -> cos, sin [1, F'*H'*W', 1, head_dim/2] float32."""
        sizes = zip(hidden_states.shape[2:], self.patch_size, strict=True)
        frames, height, width = (n // p for n, p in sizes)
        device = hidden_states.device
        # diffusers computes the angles and their cos/sin in float64 (float32 where MPS is, which has none).
        dtype = torch.float32 if device.type == "mps" else torch.float64
        frame_indices = torch.arange(frames, device=device)[None]
        return rotary_cos_sin(rotary_table(frame_indices, height, width, self.dims, self.theta, dtype))


class WanTransformerBlock(WanStyleBlock):
    """Modulated rotary self-attention, cross-attention to the text (and image), modulated MLP."""

    def __init__(
        self,
        dim: int,
        ffn_dim: int,
        heads: int,
        cross_attn_norm: bool,
        eps: float,
        added_kv_proj_dim: int | None,
    ) -> None:
        self_attention = RotarySelfAttention(dim, heads, eps)
        super().__init__(dim, ffn_dim, heads, cross_attn_norm, eps, added_kv_proj_dim, self_attention)

    def forward(
        self,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        time_rows: torch.Tensor,
        freqs: torch.Tensor,
        image_tokens: int = 0,
    ) -> torch.Tensor:
        """[B, S, D] -> [B, S, D]. encoder_hidden_states [B, I + L, D]: the projected image (I tokens, I2V)
        then text; time_rows [B, 1, 6, D], or [B, S, 6, D] with a timestep per token; freqs
        [1, S, 1, head_dim/2] complex.

        `hidden_states` is diffusers' name, which its step-cache hooks look up.
        """
        text_kv = self.attn2.key_value(encoder_hidden_states[:, image_tokens:])
        image_kv = None
        if image_tokens:
            image_kv = self.attn2.image_key_value(encoder_hidden_states[:, :image_tokens])
        return self.residual_stream(
            hidden_states,
            time_rows,
            partial(self.attn1, freqs=freqs),
            partial(self.attn2, key_value=text_kv, image_key_value=image_kv),
        )


register_block(WanTransformerBlock)


class WanTransformer3DModel(
    AttentionBackendMixin, ModelMixin, ConfigMixin, AttentionMixin, CacheMixin, PeftAdapterMixin
):
    """The Wan 2.1 / 2.2 video transformer, loading diffusers' `WanTransformer3DModel` checkpoints.

    Constructor parameters, defaults (the 14B config), parameter names, forward signature and the fp32-kept
    modules are diffusers', and so are the mixins its pipelines and hooks call (step caches, attention
    backends, regional compile, context parallelism, LoRA adapters and their
    `attention_kwargs={"scale": ...}`). `qk_norm` is recorded but, as in diffusers, q/k always get an
    RMSNorm across heads; `rope_max_seq_len` is recorded and bounds nothing.
    """

    # diffusers records a component's class in model_index.json by its module path, and takes a path whose
    # folder shares a name with one of its pipeline folders (helios, wan) for a diffusers pipeline module:
    # a saved pipeline would then not load. The public home of vidgen's transformers is vidgen.models.
    __module__ = "vidgen.models"

    _supports_gradient_checkpointing = True
    _skip_layerwise_casting_patterns = ["patch_embedding", "condition_embedder", "norm"]
    _no_split_modules = ["WanTransformerBlock"]
    _keep_in_fp32_modules = ["rope", "time_embedder", "scale_shift_table", "norm1", "norm2", "norm3"]
    _keys_to_ignore_on_load_unexpected = ["norm_added_q"]
    _repeated_blocks = ["WanTransformerBlock"]
    # diffusers' LoRA loader whose converters read this model's LoRAs (vidgen.runtime.lora).
    lora_loader = "WanLoraLoaderMixin"
    # Context parallelism, diffusers' plan: the rotary table and the video tokens are split by token on the
    # way into the blocks and stay split through them; a timestep per token (TI2V) is split the same way at
    # the model's input (a [B] timestep, not 2-D, is left whole); the text and image stay whole on every
    # rank, as cross-attention needs no other rank's keys. The video is gathered after the last projection.
    # Call it with return_dict=False then, as diffusers' pipelines do: the hook on the model itself passes
    # tensors only (so does diffusers' class's).
    _cp_plan = {
        "rope": {
            0: ContextParallelInput(split_dim=1, expected_dims=4, split_output=True),
            1: ContextParallelInput(split_dim=1, expected_dims=4, split_output=True),
        },
        "blocks.0": {"hidden_states": ContextParallelInput(split_dim=1, expected_dims=3, split_output=False)},
        "proj_out": ContextParallelOutput(gather_dim=1, expected_dims=3),
        "": {"timestep": ContextParallelInput(split_dim=1, expected_dims=2, split_output=False)},
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
        image_dim: int | None = None,
        added_kv_proj_dim: int | None = None,
        rope_max_seq_len: int = 1024,
        pos_embed_seq_len: int | None = None,
    ) -> None:
        super().__init__()
        dim = num_attention_heads * attention_head_dim
        patch = tuple(patch_size)
        self.rope = WanRotaryEmbedding(attention_head_dim, patch)
        self.patch_embedding = nn.Conv3d(in_channels, dim, kernel_size=patch, stride=patch)
        self.condition_embedder = WanConditionEmbedder(dim, freq_dim, text_dim, image_dim, pos_embed_seq_len)
        self.blocks = nn.ModuleList(
            WanTransformerBlock(dim, ffn_dim, num_attention_heads, cross_attn_norm, eps, added_kv_proj_dim)
            for _ in range(num_layers)
        )
        self.norm_out = Float32LayerNorm(dim, eps, elementwise_affine=False)
        self.proj_out = nn.Linear(dim, (out_channels or in_channels) * math.prod(patch))
        self.scale_shift_table = nn.Parameter(torch.randn(1, 2, dim) / dim**0.5)
        self.gradient_checkpointing = False

    @apply_lora_scale("attention_kwargs")
    def forward(
        self,
        hidden_states: torch.Tensor,
        timestep: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        encoder_hidden_states_image: torch.Tensor | None = None,
        return_dict: bool = True,
        attention_kwargs: dict[str, Any] | None = None,
    ) -> Transformer2DModelOutput | tuple[torch.Tensor]:
        """Predict latents [B, C, F, H, W] -> [B, C_out, F, H, W].

        `timestep` [B] (or one value), or [B, F'*H'*W'] a timestep per token (Wan 2.2 TI2V);
        `encoder_hidden_states` [B, L, text_dim]; `encoder_hidden_states_image` [B, I, image_dim] CLIP
        hidden states (I2V; [2B, I, image_dim] for first-last-frame models). `attention_kwargs`' "scale"
        scales loaded LoRA adapters for this call, as in diffusers.
        """
        batch = hidden_states.shape[0]
        patch = tuple(self.config.patch_size)
        grid = tuple(n // p for n, p in zip(hidden_states.shape[2:], patch, strict=True))  # (F', H', W')
        freqs = torch.complex(*self.rope(hidden_states))  # [1, S, 1, head_dim/2]
        # Contiguous as every later block's input is: a compiled block would otherwise recompile for block 0.
        tokens = patchify(self.patch_embedding, hidden_states).contiguous()  # [B, S, D]
        temb, time_rows = self._embed_time(timestep, batch, encoder_hidden_states.dtype)

        context, image_tokens = self._embed_context(encoder_hidden_states, encoder_hidden_states_image)

        for block in self.blocks:
            args = (tokens, context, time_rows, freqs, image_tokens)
            if torch.is_grad_enabled() and self.gradient_checkpointing:
                tokens = self._gradient_checkpointing_func(block, *args)
            else:
                tokens = block(*args)

        out = self.proj_out(modulated_output(self.norm_out, tokens, self.scale_shift_table, temb))
        out = unpatchify(out, grid, patch)
        return Transformer2DModelOutput(sample=out) if return_dict else (out,)

    def enable_cache(self, config: Any) -> None:
        """diffusers' `enable_cache`. SeaCache reads the generated video from a call through a callback,
        which diffusers supplies for its own Wan class only (input channels = output channels: T2V, TI2V);
        this class gets the same, or SeaCache would compute every step."""
        same_channels = self.config.in_channels == self.config.out_channels
        if isinstance(config, SeaCacheConfig) and config.raw_vision_callback is None and same_channels:
            config = dataclasses.replace(config, raw_vision_callback=latents_as_video)
        super().enable_cache(config)

    def _embed_context(self, text: torch.Tensor, image: torch.Tensor | None) -> tuple[torch.Tensor, int]:
        """-> the projected [image; text] context [B, I + L, D] and the image's token count I (0 where the
        blocks attend to the image as to the text)."""
        embedder = self.condition_embedder
        text = embedder.text_embedder(text)  # [B, L, D]
        if image is None:
            return text, 0
        if embedder.image_embedder is None:
            raise ValueError("encoder_hidden_states_image needs a model built with image_dim (I2V)")
        image = embedder.image_embedder(image)  # [B, I, D]
        context = torch.cat([image, text], dim=1)
        # Without image keys/values (image_dim but no added_kv_proj_dim), diffusers' cross-attention reads
        # the image tokens as text: the whole context through to_k / to_v.
        return context, image.shape[1] if self.config.added_kv_proj_dim is not None else 0

    def _embed_time(
        self, timestep: torch.Tensor, batch: int, dtype: torch.dtype
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """-> temb [B, D] and modulation rows [B, 1, 6, D]; with a timestep per token ([B, S]), temb
        [B, S, D] and rows [B, S, 6, D]."""
        embed = self.condition_embedder.embed_time
        if timestep.ndim == 2:
            temb, rows = embed(timestep.flatten(), dtype)
            return temb.unflatten(0, timestep.shape), rows.unflatten(0, timestep.shape)
        temb, rows = embed(timestep.reshape(-1).expand(batch), dtype)
        return temb, rows[:, None]


def latents_as_video(model: nn.Module, args: tuple, kwargs: dict) -> list[torch.Tensor] | None:
    """SeaCache's view of a Wan call: each sample's latents [C, F, H, W], all of them the generated video."""
    latents = kwargs.get("hidden_states", args[0] if args else None)
    return list(latents.unbind(0)) if isinstance(latents, torch.Tensor) and latents.ndim == 5 else None
