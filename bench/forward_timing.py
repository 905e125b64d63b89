"""What the forward-pass benches share: their run options, the clock, the two models built on the same
weights, paired timing against the reference model, and ours set up as vidgen runs it (`--attention`,
`--compile`; the reference too where a bench compares them alike).

Runs alternate (ours, reference, ours, ...) after a warm-up so drifting machine load hits both alike;
ratios are the median of the per-pair ratios.
"""

import argparse
import statistics
import time

import torch

from vidgen.core.errors import VidgenError
from vidgen.core.request import DTYPES, Runtime
from vidgen.runtime import levers
from vidgen.runtime.attention import ATTENTION_BACKENDS, ATTENTION_CHOICES, resolve_attention


def add_run_options(parser: argparse.ArgumentParser, reference_alike: bool = False) -> None:
    """--repeats, --warmup, --threads, --attention, --compile and --clock. `reference_alike`: the bench
    gives diffusers' model the same attention backend and compile as ours (`apply_levers(reference=)`)."""
    theirs = "diffusers' model too" if reference_alike else "diffusers' model keeps its default, SDPA"
    compiled = "diffusers' model compiled alike" if reference_alike else "diffusers eager"
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per model and pair")
    parser.add_argument("--warmup", type=int, default=1, help="untimed runs per model and pair (at least 1)")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument(
        "--attention",
        choices=ATTENTION_CHOICES,
        default="sdpa",
        help=f"ours' attention backend, as vidgen's --attention ({theirs})",
    )
    parser.add_argument(
        "--compile",
        action="store_true",
        help=f"ours with vidgen's --compile (regional torch.compile; the warm-up compiles); {compiled}",
    )
    parser.add_argument(
        "--clock",
        choices=["wall", "cpu"],
        default="wall",
        help="cpu: one thread, timed by process CPU time; steadier than wall time on a shared machine",
    )


def set_threads(args: argparse.Namespace) -> None:
    """torch's CPU threads for `--threads` and `--clock cpu` (one thread: process time counts them all)."""
    if args.clock == "cpu" and args.device != "cpu":
        raise SystemExit("--clock cpu times CPU runs only")
    if args.threads or args.clock == "cpu":
        torch.set_num_threads(1 if args.clock == "cpu" else args.threads)


def time_once(model: torch.nn.Module, inputs: dict, args: argparse.Namespace, **kwargs) -> float:
    """Seconds of one `model(**inputs, **kwargs)`, on `args.clock`."""
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    if args.device.startswith("cuda"):
        torch.cuda.synchronize()
    start = clock()
    model(**inputs, return_dict=False, **kwargs)
    if args.device.startswith("cuda"):
        torch.cuda.synchronize()
    return clock() - start


def paired_times(
    ours: torch.nn.Module, reference: torch.nn.Module, inputs: dict, args: argparse.Namespace, **ours_kwargs
) -> tuple[list[float], list[float]]:
    """`args.repeats` alternating timings of each after `args.warmup` untimed pairs."""
    ours_times, reference_times = [], []
    with torch.inference_mode():
        for run in range(args.warmup + args.repeats):
            mine = time_once(ours, inputs, args, **ours_kwargs)
            theirs = time_once(reference, inputs, args)
            if run >= args.warmup:
                ours_times.append(mine)
                reference_times.append(theirs)
    return ours_times, reference_times


def median_ratio(ours_times: list[float], reference_times: list[float]) -> float:
    return statistics.median(mine / theirs for mine, theirs in zip(ours_times, reference_times, strict=True))


def relative_error(ours: torch.nn.Module, reference: torch.nn.Module, inputs: dict, **ours_kwargs) -> float:
    """|ours - reference| / |reference| of one forward each."""
    with torch.inference_mode():
        expected = reference(**inputs, return_dict=False)[0].float()
        actual = ours(**inputs, return_dict=False, **ours_kwargs)[0].float()
    return ((actual - expected).norm() / expected.norm()).item()


def compare(
    ours: torch.nn.Module, reference: torch.nn.Module, inputs: dict, args: argparse.Namespace, **ours_kwargs
) -> None:
    """Prints median milliseconds of each, the median per-pair ratio ours / reference, and the error."""
    error = relative_error(ours, reference, inputs, **ours_kwargs)
    ours_times, reference_times = paired_times(ours, reference, inputs, args, **ours_kwargs)
    ratio = median_ratio(ours_times, reference_times)
    print(
        f"  ours {statistics.median(ours_times) * 1000:9.1f} ms   "
        f"diffusers {statistics.median(reference_times) * 1000:9.1f} ms   "
        f"ratio ours/diffusers {ratio:.3f}   (relative error {error:.1e})",
        flush=True,
    )


def compare_layouts(
    ours: torch.nn.Module, reference: torch.nn.Module, inputs: dict, args: argparse.Namespace
) -> None:
    """`compare` in the checkpoint's layout, then with both models' QKV projections fused."""
    print("1. unfused (checkpoint layout):", flush=True)
    compare(ours, reference, inputs, args)
    ours.fuse_qkv_projections()
    reference.fuse_qkv_projections()
    print("2. fused QKV, both:", flush=True)
    compare(ours, reference, inputs, args)


def apply_levers(
    ours: torch.nn.Module, args: argparse.Namespace, reference: torch.nn.Module | None = None
) -> Runtime:
    """Ours as vidgen runs it with `--attention` and `--compile`; with `reference`, diffusers' model
    gets the same backend and, with `--compile`, the same regional compile (its `_repeated_blocks`)."""
    try:
        attention = resolve_attention(args.attention, args.device, DTYPES[args.dtype])
    except VidgenError as error:
        raise SystemExit(f"error: {error}") from None
    runtime = Runtime(args.device, DTYPES[args.dtype], attention=attention, compile=args.compile)
    levers.apply_runtime(ours, runtime)
    if reference is not None:
        reference.set_attention_backend(ATTENTION_BACKENDS[attention].diffusers)
        if args.compile:
            reference.compile_repeated_blocks(**levers.COMPILE_OPTIONS)
    return runtime


def shared_models(
    reference_cls: type, ours_cls: type, args: argparse.Namespace, **config
) -> tuple[torch.nn.Module, torch.nn.Module]:
    """(ours, reference) built from `config`, in eval mode: the reference with its own random
    initialisation on `args.device` in `args.dtype` (the modules it keeps in float32 in float32, as
    from_pretrained(torch_dtype=...) loads them), ours holding the same tensors (neither model writes
    its weights, so sharing halves the memory of a run)."""
    torch.manual_seed(0)
    reference = reference_cls(**config).eval()
    kept = set(reference_cls._keep_in_fp32_modules or ())
    with torch.no_grad():
        for name, param in reference.named_parameters():
            dtype = torch.float32 if kept & set(name.split(".")) else DTYPES[args.dtype]
            param.data = param.data.to(args.device, dtype)
    with torch.device("meta"):
        ours = ours_cls(**config)
    ours.load_state_dict(reference.state_dict(), strict=True, assign=True)
    return ours.eval(), reference
