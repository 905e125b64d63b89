"""Forward-pass time of vidgen's CogVideoX transformer against diffusers', same weights and inputs.

The model is CogVideoX-2b wide (30 heads x 64, time embedding 512, T5 width 4096) but only a few layers
deep, on a small latent grid, so a forward takes about a second on a 2-core CPU: by default 2 layers,
2 latent frames of 30x44 latents (240x352 pixels; 660 video tokens) and 226 text tokens, batch 1
(`--batch 2` is what classifier-free guidance runs). `--positions rotary` switches to 5b-style rotary
positions, with the tables passed to both models the way the pipeline does.

Runs alternate (ours, diffusers, ours, ...) after a warm-up so drifting machine load hits both alike;
the ratio printed is the median of the per-pair ratios. Two pairs are timed: unfused vs unfused (the
checkpoint layout, what a pipeline runs by default), and fused QKV vs diffusers' fused QKV.

    python bench/cogvideox_forward.py
    python bench/cogvideox_forward.py --threads 1 --clock cpu       # a busy shared CPU machine
    python bench/cogvideox_forward.py --device cuda --dtype bf16 --layers 4 --frames 13 --height 60 --width 90
"""

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from vidgen.ui.console import quiet_libraries  # noqa: E402

quiet_libraries()  # before diffusers loads: with torchao installed it and torch log on import
from diffusers import CogVideoXTransformer3DModel as DiffusersModel  # noqa: E402
from forward_timing import add_run_options, apply_levers, compare_layouts, set_threads  # noqa: E402

from vidgen.families.cogvideox.model import CogVideoXTransformer3DModel, rotary_embedding  # noqa: E402

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="fp32")
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--frames", type=int, default=2, help="latent frames")
    parser.add_argument("--height", type=int, default=30, help="latent height")
    parser.add_argument("--width", type=int, default=44, help="latent width")
    parser.add_argument("--text-tokens", type=int, default=226)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--positions", choices=["sincos", "rotary"], default="sincos")
    add_run_options(parser)
    return parser.parse_args()


def build_models(args: argparse.Namespace) -> tuple[torch.nn.Module, torch.nn.Module]:
    config = {
        "num_attention_heads": 30,
        "attention_head_dim": 64,
        "num_layers": args.layers,
        "use_rotary_positional_embeddings": args.positions == "rotary",
    }
    torch.manual_seed(0)
    reference = DiffusersModel(**config)
    with torch.no_grad():
        # diffusers zero-initialises some layers; random weights keep every op's output non-trivial.
        for param in reference.parameters():
            param.add_(torch.randn_like(param) * 0.02)
    ours = CogVideoXTransformer3DModel(**config)
    ours.load_state_dict(reference.state_dict(), strict=True)
    dtype = DTYPES[args.dtype]
    return ours.to(args.device, dtype).eval(), reference.to(args.device, dtype).eval()


def make_inputs(args: argparse.Namespace, config: object) -> dict:
    dtype, device = DTYPES[args.dtype], args.device
    generator = torch.Generator().manual_seed(1)
    latents = torch.randn(args.batch, args.frames, 16, args.height, args.width, generator=generator)
    text = torch.randn(args.batch, args.text_tokens, 4096, generator=generator)
    inputs = {
        "hidden_states": latents.to(device, dtype),
        "encoder_hidden_states": text.to(device, dtype),
        "timestep": torch.full((args.batch,), 500, device=device),
    }
    if args.positions == "rotary":
        inputs["image_rotary_emb"] = rotary_embedding(config, args.frames, args.height, args.width, device)
    return inputs


def main() -> None:
    args = parse_args()
    set_threads(args)
    ours, reference = build_models(args)
    runtime = apply_levers(ours, args)
    inputs = make_inputs(args, ours.config)
    tokens = args.text_tokens + args.frames * (args.height // 2) * (args.width // 2)
    print(
        f"CogVideoX-2b width, {args.layers} layers, {args.positions} positions, batch {args.batch}, "
        f"{args.frames}x{args.height}x{args.width} latents ({tokens} tokens), {args.dtype} on {args.device}, "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.clock} clock; ours: attention "
        f"{runtime.attention}{', compiled' if args.compile else ''}"
    )
    compare_layouts(ours, reference, inputs, args)


if __name__ == "__main__":
    main()
