"""Forward-pass time of vidgen's Helios transformer against diffusers', same weights and inputs.

The model has the released width (40 heads x 128, FFN 13824, UMT5 width 4096) but 1 layer by default, and
runs one pipeline-shaped call: a 3-latent-frame chunk plus the short / mid / long history terms that
HeliosPipeline builds (history sizes [16, 2, 1] with keep_first_frame: 2 short, 2 mid and 16 long latent
frames), batch 1 (the pipeline runs cond and uncond as separate calls), 512 text tokens. The default
latent grid, 16x16 (128x128 pixels: 192 chunk tokens + 160 history tokens), keeps a 2-core CPU run to minutes;
the released resolution is 48x80 latents (`--height 48 --width 80`, GPU-sized).

Runs alternate (ours, diffusers, ours, ...) after a warm-up so drifting machine load hits both alike; on a
machine shared with other jobs, `--clock cpu` (one thread, process CPU time) is much steadier.
Three pairs are timed:
  1. unfused vs unfused (the checkpoint layout);
  2. fused QKV vs diffusers' fused QKV;
  3. ours fused with a HeliosCache vs diffusers fused: a denoising step after the chunk's first, where the
     rotary table, the projected text and the cross-attention keys/values are reused. Their share of the
     work shrinks with the latent size (about 1% at 48x80 with 40 layers), so this ratio flatters ours on
     the small default grid.

    python bench/helios_forward.py
    python bench/helios_forward.py --clock cpu
    python bench/helios_forward.py --device cuda --dtype bf16 --layers 4 --height 48 --width 80
"""

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from vidgen.ui.console import quiet_libraries  # noqa: E402

quiet_libraries()  # before diffusers loads: with torchao installed it and torch log on import
from diffusers import HeliosTransformer3DModel as DiffusersModel  # noqa: E402
from forward_timing import add_run_options, apply_levers, compare, compare_layouts, set_threads, shared_models  # noqa: E402

from vidgen.families.helios.model import HeliosCache, HeliosTransformer3DModel  # noqa: E402

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
HISTORY_SIZES = (16, 2, 1)  # long, mid, 1x latent frames: the pipeline default


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="fp32")
    parser.add_argument("--layers", type=int, default=1)
    parser.add_argument("--frames", type=int, default=3, help="latent frames in the chunk")
    parser.add_argument("--height", type=int, default=16, help="latent height (pixels / 8)")
    parser.add_argument("--width", type=int, default=16, help="latent width (pixels / 8)")
    parser.add_argument("--text-tokens", type=int, default=512)
    parser.add_argument("--batch", type=int, default=1)
    add_run_options(parser)
    return parser.parse_args()


def build_models(args: argparse.Namespace) -> tuple[HeliosTransformer3DModel, DiffusersModel]:
    """The released architecture with `args.layers` blocks; ours shares the reference's weight tensors."""
    return shared_models(DiffusersModel, HeliosTransformer3DModel, args, num_layers=args.layers)


def make_inputs(args: argparse.Namespace) -> dict:
    """Inputs as HeliosPipeline builds them for a chunk after the first (keep_first_frame)."""
    dtype, device = DTYPES[args.dtype], args.device
    g = torch.Generator().manual_seed(1)
    long, mid, one = HISTORY_SIZES
    indices = torch.arange(1 + long + mid + one + args.frames)
    prefix, idx_long, idx_mid, idx_one, idx_chunk = indices.split([1, long, mid, one, args.frames])
    history = torch.randn(args.batch, 16, 1 + long + mid + one, args.height, args.width, generator=g)
    prefix_latents, latents_long, latents_mid, latents_one = history.split([1, long, mid, one], dim=2)
    inputs = {
        "hidden_states": torch.randn(args.batch, 16, args.frames, args.height, args.width, generator=g),
        "timestep": torch.full((args.batch,), 937.5),
        "encoder_hidden_states": torch.randn(args.batch, args.text_tokens, 4096, generator=g),
        "indices_hidden_states": idx_chunk[None],
        "indices_latents_history_short": torch.cat([prefix, idx_one])[None],
        "indices_latents_history_mid": idx_mid[None],
        "indices_latents_history_long": idx_long[None],
        "latents_history_short": torch.cat([prefix_latents, latents_one], dim=2),
        "latents_history_mid": latents_mid,
        "latents_history_long": latents_long,
    }
    return {
        k: v.to(device, dtype) if v.is_floating_point() and k != "timestep" else v.to(device)
        for k, v in inputs.items()
    }


def token_counts(args: argparse.Namespace) -> tuple[int, int]:
    """(chunk tokens, history tokens) after patching."""
    h, w = args.height // 2, args.width // 2
    chunk = args.frames * h * w
    short = (1 + HISTORY_SIZES[2]) * h * w
    mid = -(-HISTORY_SIZES[1] // 2) * -(-h // 2) * -(-w // 2)
    long = -(-HISTORY_SIZES[0] // 4) * -(-h // 4) * -(-w // 4)
    return chunk, short + mid + long


def main() -> None:
    args = parse_args()
    set_threads(args)
    ours, reference = build_models(args)
    runtime = apply_levers(ours, args)
    inputs = make_inputs(args)
    chunk, history = token_counts(args)
    print(
        f"Helios released width, {args.layers} layer(s), batch {args.batch}, {args.frames}x{args.height}x"
        f"{args.width} chunk latents + history {list(HISTORY_SIZES)} ({chunk} chunk + {history} history "
        f"tokens, {args.text_tokens} text tokens), {args.dtype} on {args.device}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, {args.clock} clock; ours: attention {runtime.attention}"
        f"{', compiled' if args.compile else ''}",
        flush=True,
    )
    compare_layouts(ours, reference, inputs, args)
    print("3. fused QKV, ours reusing a HeliosCache (a later step of the chunk):", flush=True)
    compare(ours, reference, inputs, args, cache=HeliosCache())


if __name__ == "__main__":
    main()
