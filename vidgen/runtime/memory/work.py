"""How much working memory (activations, the video) a request takes, from its size and the configs.

Two estimates from the same counts: `least_bytes`, a floor that only what no run can avoid adds up to,
so that a size it refuses before loading really cannot run; and `stage_work`, each stage's typical
peak, for the offload planner, which must not choose a plan that only fits on paper. Both are
estimates: each constant says where it comes from; bench/gpu_suite.py measures real peaks on a GPU.
"""

import json
import math
from dataclasses import dataclass
from pathlib import Path

from vidgen.core.model_info import ModelInfo
from vidgen.runtime.memory.plan import Work

# Floor: live copies of the hidden states per transformer token at a block's peak (the residual, the
# normalised input, query, key, value and the attention output; the feed-forward's wider state comes
# after the attention ones are freed).
FLOOR_COPIES = 6
# Typical peak: about 7 hidden-width tensors plus 2 feed-forward-width ones per token, with
# memory-efficient attention (no sequence x sequence matrix).
PEAK_HIDDEN, PEAK_INNER = 7, 2
# The VAE decodes in time slices: CogVideoX 2 latent frames at a time (8 video frames), Wan (Helios)
# one latent frame (4 video frames) with its causal cache of the previous ones.
DECODE_LATENT_FRAMES = 2
# Live activations of the decoder at full resolution: a floor of 3 (a resnet block's input, output and
# the normalised copy between them), a typical peak of 6 (two convolutions and the causal cache too).
DECODE_FLOOR_COPIES, DECODE_PEAK_COPIES = 3, 6
FP32 = 4  # the VAE runs, and the output video is assembled, in fp32


@dataclass(frozen=True)
class Footprint:
    """What the estimates need of a model beyond ModelInfo, read from its configs."""

    inner_dim: int  # transformer width: heads x head size
    decoder_channels: int  # the VAE decoder's channels at full resolution
    latent_channels: int = 16
    ffn_dim: int = 0  # the transformer's feed-forward width; 0: four times inner_dim (CogVideoX)
    text_dim: int = 4096  # T5-XXL and UMT5-XXL
    text_ffn_dim: int = 10240


def read_footprint(folder: Path) -> Footprint:
    """The model folder's footprint; the released models' values stand in for anything a config lacks."""
    transformer = _config(folder / "transformer" / "config.json")
    vae = _config(folder / "vae" / "config.json")
    text = _config(folder / "text_encoder" / "config.json")
    heads, head_dim = transformer.get("num_attention_heads", 30), transformer.get("attention_head_dim", 64)
    if "block_out_channels" in vae:  # CogVideoX's VAE: the first block is the full-resolution one
        decoder = vae["block_out_channels"][0]
    else:  # Wan's VAE (Helios): base width times the first multiplier
        decoder = vae.get("base_dim", 96) * (vae.get("dim_mult") or [1])[0]
    return Footprint(
        inner_dim=heads * head_dim,
        decoder_channels=decoder,
        latent_channels=vae.get("latent_channels") or vae.get("z_dim") or 16,
        ffn_dim=transformer.get("ffn_dim", 0),
        text_dim=text.get("d_model", 4096),
        text_ffn_dim=text.get("d_ff", 10240),
    )


def _config(path: Path) -> dict:
    try:
        values = json.loads(path.read_text())
    except (OSError, ValueError, RecursionError):  # the folder check names a broken file, later
        return {}
    return values if isinstance(values, dict) else {}


def attended_tokens(info: ModelInfo, height: int, width: int, frames: int) -> int:
    """Tokens one transformer call attends over: the patched latents (Helios: one chunk and its
    compressed history, `call_latent_frames`) plus the text where it shares the sequence (CogVideoX)."""
    cell = info.spatial_scale * info.patch_size  # pixels per token side
    grid = (height // cell) * (width // cell)
    if info.call_latent_frames:
        latents = math.ceil(info.call_latent_frames * grid)
    else:
        latents = math.ceil(info.latent_frames(frames) / (info.patch_size_t or 1)) * grid
    return latents + (info.max_text_tokens if info.text_in_sequence else 0)


def _decode_bytes(height: int, width: int, frames: int, info: ModelInfo, channels: int, tiled: bool) -> int:
    """One time slice of the decoder's full-resolution activation, in fp32, per live copy."""
    at_once = min(frames, DECODE_LATENT_FRAMES * info.temporal_scale)
    pixels = min(height * width, info.tile_pixels) if tiled else height * width
    return at_once * pixels * channels * FP32


def _branches(info: ModelInfo, guided: bool) -> int:
    """The guidance branches one transformer call holds: classifier-free guidance runs a conditional
    and an unconditional one, batched together or one after the other."""
    return 2 if guided and info.guidance_batched else 1


def least_bytes(
    height: int,
    width: int,
    frames: int,
    info: ModelInfo,
    footprint: Footprint,
    dtype_bytes: int,
    vae_tiling: bool,
    guided: bool = True,
) -> int:
    """The least memory generating `frames` frames of `height` x `width` takes, weights aside: the peak
    of the transformer's activations and the VAE decode, plus the latents and the video assembled."""
    batch = _branches(info, guided)
    tokens = attended_tokens(info, height, width, frames)
    transformer = batch * tokens * footprint.inner_dim * dtype_bytes * FLOOR_COPIES
    latent_frames = info.latent_frames(frames)
    if info.held_latent_frames:
        latent_frames = min(latent_frames, info.held_latent_frames)
    cells = (height // info.spatial_scale) * (width // info.spatial_scale)
    latents = batch * footprint.latent_channels * latent_frames * cells * FP32
    decode = _decode_bytes(height, width, frames, info, footprint.decoder_channels, vae_tiling)
    video = frames * height * width * 3 * FP32
    return max(transformer, decode * DECODE_FLOOR_COPIES) + latents + video


def stage_work(
    info: ModelInfo,
    footprint: Footprint,
    height: int,
    width: int,
    frames: int,
    guided: bool,
    dtype_bytes: int,
) -> Work:
    """Each stage's typical peak working memory for one request, for the offload planner."""
    batch = _branches(info, guided)
    tokens = attended_tokens(info, height, width, frames)
    inner = footprint.ffn_dim or 4 * footprint.inner_dim
    per_token = PEAK_HIDDEN * footprint.inner_dim + PEAK_INNER * inner
    text_per_token = PEAK_HIDDEN * footprint.text_dim + PEAK_INNER * footprint.text_ffn_dim
    channels = footprint.decoder_channels
    return Work(
        text=batch * info.max_text_tokens * text_per_token * dtype_bytes,
        denoise=batch * tokens * per_token * dtype_bytes,
        decode=_decode_bytes(height, width, frames, info, channels, False) * DECODE_PEAK_COPIES,
        decode_tiled=_decode_bytes(height, width, frames, info, channels, True) * DECODE_PEAK_COPIES,
    )
