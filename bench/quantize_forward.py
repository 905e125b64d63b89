"""Weight bytes and forward time of vidgen's CogVideoX transformer under each `--quantize` mode, against
diffusers' transformer in the same dtype without quantization, same weights and inputs.

CogVideoX-2b wide, a few layers deep (see cogvideox_forward.py for the model and inputs). Modes that
need torchao (int8, fp8) are listed as skipped where it is not installed; fp8 also needs a GPU with fp8
matmuls. Runs alternate (ours, diffusers, ...) after a warm-up; the ratio is the median per-pair ratio.

    python bench/quantize_forward.py --dtype bf16
    python bench/quantize_forward.py --device cuda --dtype bf16 --layers 4 --frames 13 --height 60 --width 90
"""

import copy
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from vidgen.ui.console import quiet_libraries  # noqa: E402

quiet_libraries()  # before diffusers' models load: with torchao installed they log on import
from cogvideox_forward import build_models, make_inputs, parse_args  # noqa: E402
from forward_timing import median_ratio, paired_times, relative_error, set_threads  # noqa: E402

from vidgen.core.errors import VidgenError  # noqa: E402
from vidgen.runtime.memory.quantize import MODES, check_quantize, quantize, weight_bytes  # noqa: E402


def main() -> None:
    args = parse_args()
    set_threads(args)
    base, reference = build_models(args)
    inputs = make_inputs(args, base.config)
    reference_bytes = weight_bytes(reference)
    print(
        f"CogVideoX-2b width, {args.layers} layers, {args.dtype} on {args.device}, "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads; "
        f"diffusers' weights {reference_bytes / 1e6:.1f} MB"
    )
    print(f"{'mode':12} {'weights MB':>10} {'vs diffusers':>12} {'time ratio':>10} {'rel. error':>10}")
    for mode in MODES:
        try:
            check_quantize(mode, args.device)
        except VidgenError as error:
            print(f"{mode:12} skipped: {error}")
            continue
        ours = quantize(copy.deepcopy(base), mode, base.dtype)
        ratio = median_ratio(*paired_times(ours, reference, inputs, args))
        error = relative_error(ours, reference, inputs)
        size = weight_bytes(ours)
        print(f"{mode:12} {size / 1e6:10.1f} {size / reference_bytes:12.3f} {ratio:10.3f} {error:10.1e}")


if __name__ == "__main__":
    main()
