"""Forward-pass time of vidgen's Wan transformer against diffusers', same weights and inputs.

The model has a released width, Wan2.1-T2V-1.3B's (`--model 1.3b`: 12 heads x 128, FFN 8960) or the
14B's (`--model 14b`: 40 heads x 128, FFN 13824; also each Wan 2.2 A14B expert), UMT5 width 4096, but
few layers (2 by default), and runs one pipeline-shaped call: batch 1 (WanPipeline runs the guidance
branches as separate calls), 512 text tokens, a timestep in the flow schedule. The default latent grid,
3 frames of 24x40 latents (9 frames of 192x320 pixels: 720 video tokens), keeps a 2-core CPU run to
minutes; the released 480x832, 81 frames are 21 frames of 60x104 latents (32,760 tokens:
`--frames 21 --height 60 --width 104`, GPU-sized).

Unlike the other forward benches, diffusers' model gets the same `--attention` backend and, with
`--compile`, the same regional torch.compile of its repeated block (diffusers' `compile_repeated_blocks`,
what vidgen's `--compile` does to ours): each ratio compares the two models run alike.

Runs alternate (ours, diffusers, ours, ...) after a warm-up so drifting machine load hits both alike; on a
machine shared with other jobs, `--clock cpu` (one thread, process CPU time) is much steadier.
Two pairs are timed: unfused vs unfused (the checkpoint layout, what a pipeline runs), and fused QKV vs
diffusers' fused QKV.

    python bench/wan_forward.py --clock cpu
    python bench/wan_forward.py --model 14b --layers 1 --clock cpu
    python bench/wan_forward.py --model 14b --device cuda --dtype bf16 --layers 4 --frames 21 --height 60 \\
        --width 104 --attention auto --compile
"""

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from vidgen.ui.console import quiet_libraries  # noqa: E402

quiet_libraries()  # before diffusers loads: with torchao installed it and torch log on import
from diffusers import WanTransformer3DModel as DiffusersModel  # noqa: E402
from forward_timing import add_run_options, apply_levers, compare_layouts, set_threads, shared_models  # noqa: E402

from vidgen.core.request import DTYPES  # noqa: E402
from vidgen.families.wan.model import WanTransformer3DModel  # noqa: E402

# The released widths (MODELS.md "Wan family"); the rest of the config is diffusers' class default.
WIDTHS = {
    "1.3b": dict(num_attention_heads=12, ffn_dim=8960),
    "14b": dict(num_attention_heads=40, ffn_dim=13824),
}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=sorted(WIDTHS), default="1.3b", help="whose width")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="fp32")
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--frames", type=int, default=3, help="latent frames ((video frames - 1) / 4 + 1)")
    parser.add_argument("--height", type=int, default=24, help="latent height (pixels / 8)")
    parser.add_argument("--width", type=int, default=40, help="latent width (pixels / 8)")
    parser.add_argument("--text-tokens", type=int, default=512)
    parser.add_argument("--batch", type=int, default=1)
    add_run_options(parser, reference_alike=True)
    return parser.parse_args()


def make_inputs(args: argparse.Namespace) -> dict:
    """Inputs as WanPipeline passes them: latents and text in the transformer's dtype, timestep [B]."""
    dtype, device = DTYPES[args.dtype], args.device
    generator = torch.Generator().manual_seed(1)
    latents = torch.randn(args.batch, 16, args.frames, args.height, args.width, generator=generator)
    text = torch.randn(args.batch, args.text_tokens, 4096, generator=generator)
    return {
        "hidden_states": latents.to(device, dtype),
        "timestep": torch.full((args.batch,), 937, device=device),
        "encoder_hidden_states": text.to(device, dtype),
    }


def main() -> None:
    args = parse_args()
    set_threads(args)
    config = dict(WIDTHS[args.model], num_layers=args.layers)
    ours, reference = shared_models(DiffusersModel, WanTransformer3DModel, args, **config)
    runtime = apply_levers(ours, args, reference)
    inputs = make_inputs(args)
    tokens = args.frames * (args.height // 2) * (args.width // 2)
    print(
        f"Wan {args.model} width, {args.layers} layer(s), batch {args.batch}, {args.frames}x{args.height}x"
        f"{args.width} latents ({tokens} video tokens, {args.text_tokens} text tokens), {args.dtype} on "
        f"{args.device}, torch {torch.__version__}, {torch.get_num_threads()} threads, {args.clock} clock; "
        f"both: attention {runtime.attention}{', compiled' if args.compile else ''}",
        flush=True,
    )
    compare_layouts(ours, reference, inputs, args)


if __name__ == "__main__":
    main()
