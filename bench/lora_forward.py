"""Forward time of vidgen's CogVideoX transformer with LoRAs fused (`--lora`), against the same model
without LoRA: fusing folds the adapters into the weights, so the ratio should be 1 (at most 1.02).

CogVideoX-2b wide, a few layers deep (see cogvideox_forward.py for the model and inputs). The LoRAs are
rank-16 PEFT adapters on the attention and feed-forward projections, saved as diffusers saves them and
fused by `vidgen.runtime.lora.fuse_loras`, as `vidgen t2v --lora` does. Runs alternate (LoRA, base, ...) after
a warm-up; the ratio is the median per-pair ratio. For comparison it also times PEFT's unfused adapters.

    python bench/lora_forward.py                       # two stacked LoRAs, CPU, fp32
    python bench/lora_forward.py --loras 1 --repeats 21 --clock cpu
    python bench/lora_forward.py --device cuda --dtype bf16 --layers 4 --frames 13 --height 60 --width 90
"""

import argparse
import copy
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from cogvideox_forward import build_models, make_inputs, parse_args  # noqa: E402
from forward_timing import median_ratio, paired_times, set_threads  # noqa: E402

from vidgen.core.request import Lora  # noqa: E402
from vidgen.runtime.lora import fuse_loras  # noqa: E402

TARGETS = ["to_q", "to_k", "to_v", "to_out.0", "net.0.proj", "net.2"]


def save_lora(reference: torch.nn.Module, folder: Path, seed: int) -> Path:
    """A rank-16 LoRA for `reference`'s shape, saved as diffusers' save_lora_weights writes it."""
    from diffusers import CogVideoXPipeline
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    model = copy.deepcopy(reference).float().cpu()
    torch.manual_seed(seed)
    model.add_adapter(
        LoraConfig(r=16, lora_alpha=16, init_lora_weights=False, target_modules=TARGETS), "bench"
    )
    layers = get_peft_model_state_dict(model, adapter_name="bench")
    metadata = model.peft_config["bench"].to_dict()
    CogVideoXPipeline.save_lora_weights(
        folder, transformer_lora_layers=layers, transformer_lora_adapter_metadata=metadata
    )
    return folder / "pytorch_lora_weights.safetensors"


def options() -> argparse.Namespace:
    """cogvideox_forward.py's options, plus --loras (how many LoRAs to stack)."""
    extra = argparse.ArgumentParser(add_help=False)
    extra.add_argument("--loras", type=int, default=2, help="stacked LoRAs")
    known, rest = extra.parse_known_args()
    sys.argv = [sys.argv[0], *rest]
    args = parse_args()
    args.loras = known.loras
    return args


def main() -> None:
    args = options()
    set_threads(args)
    base, reference = build_models(args)
    inputs = make_inputs(args, base.config)
    with tempfile.TemporaryDirectory() as folder:
        paths = [save_lora(reference, Path(folder) / str(n), seed=n) for n in range(args.loras)]
        loras = tuple(Lora(str(path), str(path), scale=0.8) for path in paths)
        fused = fuse_loras(copy.deepcopy(base), loras)
        unfused = copy.deepcopy(base)
        names = [f"lora{n}" for n in range(len(paths))]
        for name, path in zip(names, paths, strict=True):
            unfused.load_lora_adapter(
                str(path.parent), weight_name=path.name, prefix="transformer", adapter_name=name
            )
        unfused.set_adapters(names, [0.8] * len(names))
    print(
        f"CogVideoX-2b width, {args.layers} layers, {args.dtype} on {args.device}, "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads; "
        f"{args.loras} rank-16 LoRA(s); median of {args.repeats} pairs"
    )
    fused_ratio = median_ratio(*paired_times(fused, base, inputs, args))
    unfused_ratio = median_ratio(*paired_times(unfused, base, inputs, args))
    print(f"fused / no LoRA:   {fused_ratio:.3f}")
    print(f"unfused / no LoRA: {unfused_ratio:.3f}  (PEFT adapters, for reference)")


if __name__ == "__main__":
    main()
