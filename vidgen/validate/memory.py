"""Will a request fit in memory? A lower-bound estimate, checked before any weights load.

Without it a size past the machine ends deep in generation: a traceback from the allocator on the
CPU, or the kernel's out-of-memory killer taking a whole batch with it. The estimate counts only what
no run can avoid (the weights are left out), so a size it refuses cannot run, and one it lets through
may still not fit; the allocator's own failure is then caught and explained (exit 3).
"""

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

from vidgen.errors import OUT_OF_MEMORY, VidgenError
from vidgen.model_info import ModelInfo
from vidgen.request import Request, Runtime

# Live copies of the hidden states per transformer token at the peak of a block: the residual, the
# normalised input, query, key, value and the attention output (the feed-forward's wider hidden
# state comes after the attention ones are freed). A floor, not a profile.
TRANSFORMER_COPIES = 6
# Latent frames the Helios transformer attends over at once: a 9-frame chunk and its 19 frames of
# history (16 + 2 + 1).
HELIOS_WINDOW = 9 + 19
# Live activations of the VAE decoder at full resolution: a resnet block's input, its output and
# the normalised copy between them.
DECODE_COPIES = 3
# The VAE decodes in time slices: CogVideoX 2 latent frames at a time (8 video frames), Wan
# (Helios) one latent frame (4 video frames) with its causal cache of the previous ones.
DECODE_LATENT_FRAMES = 2
# The decoder's tile when tiling is on (CogVideoX's sample tile is 480x720; Wan's is similar).
TILE_PIXELS = 480 * 720
FP32 = 4  # the VAE runs and the output video is assembled in fp32


@dataclass(frozen=True)
class Footprint:
    """What the estimate needs of a model beyond ModelInfo: read from its transformer and VAE configs."""

    inner_dim: int  # transformer width: heads x head size
    decoder_channels: int  # the VAE decoder's channels at full resolution
    latent_channels: int = 16


def read_footprint(folder: Path) -> Footprint:
    """The model folder's footprint; the released models' values stand in for anything a config lacks."""
    transformer = _config(folder / "transformer" / "config.json")
    vae = _config(folder / "vae" / "config.json")
    heads, head_dim = transformer.get("num_attention_heads", 30), transformer.get("attention_head_dim", 64)
    if "block_out_channels" in vae:  # CogVideoX's VAE: the first block is the full-resolution one
        decoder = vae["block_out_channels"][0]
    else:  # Wan's VAE (Helios): base width times the first multiplier
        decoder = vae.get("base_dim", 96) * (vae.get("dim_mult") or [1])[0]
    latent = vae.get("latent_channels") or vae.get("z_dim") or 16
    return Footprint(inner_dim=heads * head_dim, decoder_channels=decoder, latent_channels=latent)


def _config(path: Path) -> dict:
    try:
        values = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return values if isinstance(values, dict) else {}


def estimate_bytes(
    height: int,
    width: int,
    frames: int,
    info: ModelInfo,
    footprint: Footprint,
    dtype_bytes: int,
    vae_tiling: bool,
    guided: bool = True,
) -> int:
    """The least memory (bytes) generating `frames` frames of `height` x `width` takes, weights aside:
    the peak of the transformer's activations and the VAE decode, plus the video being assembled."""
    batch = 2 if guided else 1  # classifier-free guidance runs the conditional and unconditional halves
    latent_frames = info.latent_frames(frames)
    if info.family == "helios":
        latent_frames = min(latent_frames, HELIOS_WINDOW)
    grid_h, grid_w = height // info.spatial_scale, width // info.spatial_scale
    patch_t = info.patch_size_t or 1
    tokens = math.ceil(latent_frames / patch_t) * (grid_h // info.patch_size) * (grid_w // info.patch_size)
    sequence = tokens + (info.max_text_tokens if info.family == "cogvideox" else 0)
    transformer = batch * sequence * footprint.inner_dim * dtype_bytes * TRANSFORMER_COPIES
    latents = batch * footprint.latent_channels * latent_frames * grid_h * grid_w * FP32
    decoded_at_once = min(frames, DECODE_LATENT_FRAMES * info.temporal_scale)
    pixels = min(height * width, TILE_PIXELS) if vae_tiling else height * width
    decode = decoded_at_once * pixels * footprint.decoder_channels * FP32 * DECODE_COPIES
    video = frames * height * width * 3 * FP32
    return max(transformer, decode) + latents + video


def machine_memory(device: str) -> int | None:
    """The memory `device` has in all (bytes); None where it cannot be read (then nothing is refused)."""
    if device.startswith("cuda"):
        import torch

        index = torch.device(device).index
        return torch.cuda.get_device_properties(
            torch.cuda.current_device() if index is None else index
        ).total_memory
    if device != "cpu":
        return None
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return _meminfo_total()


def _meminfo_total() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def check_fits(request: Request, info: ModelInfo, folder: Path, runtime: Runtime) -> None:
    """Refuse, before loading, a request whose least memory is more than the device has; `folder`
    holds the model's configs."""
    total = machine_memory(runtime.device)
    if total is None:
        return
    size = (request.height, request.width, request.frames)
    needed = estimate_bytes(
        *size,
        info,
        read_footprint(folder),
        runtime.dtype.itemsize,
        runtime.vae_tiling,
        guided=request.guidance > 1.0,  # as the pipelines decide whether to run the unconditional half
    )
    if needed <= total:
        return
    less = "a smaller --height/--width/--frames" + ("" if runtime.vae_tiling else ", or --vae-tiling")
    raise VidgenError(
        f"{request.height}x{request.width} with {request.frames} frames needs at least "
        f"{needed / 2**30:.1f} GiB, more than the {total / 2**30:.1f} GiB {runtime.device} has",
        f"use less memory: {less}",
        exit_code=OUT_OF_MEMORY,
    )
