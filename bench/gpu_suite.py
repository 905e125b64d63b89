"""Whole-video speed and memory of vidgen against diffusers' own pipelines, same weights, same process.

    python bench/gpu_suite.py --json suite.json        # released sizes, bf16, one CUDA GPU, < 8 minutes
    python bench/gpu_suite.py --smoke                  # the same code on tiny configs on the CPU (CI)
    python bench/gpu_suite.py --only cogvideox-2b --skip-memory
    python bench/gpu_suite.py --family wan --json wan.json   # the Wan rows alone, one device call

Models are built in memory with random weights at the released sizes (the compute equals the real
checkpoints'; bench/suite_models.py), nothing is downloaded or written. Speed cases (issue 11):
Helios-Distilled at 384x640 (33-frame chunks, pyramid steps 2,2,2, first chunk amplified; 3 chunks
timed after the warm-up chunk: frames per second, transformer + VAE decode), CogVideoX-2b / -5b at
49x480x720 with CFG (5 steps timed after a warm-up step, plus the decode; the 50-step video time is
projected) and Wan2.1-T2V-1.3B / -14B at 81x480x832 with CFG (2 steps timed after a warm-up step, plus
the decode, projected to 50 steps; the 14B built with 4 of its 40 blocks, its step time scaled by 10).
Each case runs diffusers' pipeline (the reference), then vidgen eager (SDPA), with the best
`--attention`, `--compile`, `--cache first-block` and `--quantize fp8` (a skipped row says why where
torchao or fp8 matmuls are missing); Helios adds eager with each chunk decoded on a second CUDA stream
beside the next chunk's denoising, as `vidgen stream` runs it. The memory table (issue 12) runs
vidgen with each offload plan on Helios-Distilled (one chunk) and CogVideoX-5b under a cap on usable
GPU memory standing for 24 GB and 16 GB cards; a plan that runs out of memory is a row that says
so. Wan 2.2 A14B's rows (uncapped) give the peak with its two 14B experts under model and group
offload, one step of each expert at 81x480x832 (the first expert leaves the device before the second
comes). Every row that generates frames gives its largest uint8 difference to diffusers' frames.

Rows print as they finish and the JSON is rewritten after each, so a run stopped at its limit keeps
what it measured; rows that would start after `--budget` seconds are skipped with that reason. The
tables (with date, card and versions) print last. Everything does not fit one 10-minute device call
(Helios' memory rows, last, are the first to go): `--family` picks a family's cases for a call of its own.
"""

import argparse
import gc
import json
import platform
import sys
import time
import traceback
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from vidgen.ui.console import quiet_libraries  # noqa: E402

quiet_libraries()  # before diffusers loads: with torchao installed it and torch log on import
import suite_models as models  # noqa: E402
import suite_runs as runs  # noqa: E402

from vidgen.core.errors import VidgenError  # noqa: E402
from vidgen.core.request import Request, Runtime  # noqa: E402
from vidgen.runtime import levers  # noqa: E402
from vidgen.runtime.attention import resolve_attention  # noqa: E402
from vidgen.runtime.memory.quantize import check_quantize  # noqa: E402

PROMPT = "a panda plays a guitar in a bamboo forest, cinematic light"
# (offload, quantize) plans in the order the planner tries them, and the cards they stand for.
MEMORY_PLANS = (
    ("none", "none"),
    ("model", "none"),
    ("group", "none"),
    ("group", "fp8-storage"),
    ("sequential", "none"),
)
CARDS_GB = (24, 16)
# Wan 2.2 A14B: its two experts under the plans that keep one expert (model) or one block (group) on
# the device, uncapped (None): the peak is the measure.
EXPERT_PLANS = (("model", "none"), ("group", "none"))
DECODE_AHEAD_RUN = "vidgen stream decode ahead"  # eager, each chunk decoded beside the next one's denoising
GB = 1024**3


@dataclass(frozen=True)
class Case:
    name: str  # what --only takes
    spec: models.ModelSpec
    workload: runs.Workload
    memory: bool = False  # the memory table's plans instead of the speed runs
    plans: tuple[tuple[str, str], ...] = MEMORY_PLANS  # memory: (offload, quantize) in order
    cards: tuple[int | None, ...] = CARDS_GB  # memory: the caps, GB (None: uncapped, any device)


@dataclass
class Row:
    table: str  # "speed" | "memory"
    case: str
    run: str
    seconds: float | None = None  # Helios: the timed chunks; CogVideoX: the projected 50-step video
    rate: float | None = None  # frames per second
    peak_gb: float | None = None
    max_uint8_difference: int | None = None  # against diffusers' frames
    card_gb: int | None = None  # memory table: the cap standing for this card
    note: str = ""


def cases(smoke: bool) -> list[Case]:
    if smoke:
        helios = runs.Workload(
            "helios", _request(height=64, width=128, frames=66, guidance=1.0), pyramid_steps=(1, 1, 1)
        )
        cogvideox = runs.Workload("cogvideox", _request(height=64, width=96, frames=9, steps=3))
        wan = runs.Workload("wan", _wan_request(height=64, width=96, frames=9, steps=3))
        specs = (models.TINY_HELIOS, models.TINY_2B, models.TINY_5B)
        wan_specs = (models.TINY_WAN, models.TINY_WAN_14B, models.TINY_WAN_22)
    else:
        helios = runs.Workload(
            "helios", _request(height=384, width=640, frames=4 * 33, guidance=1.0), pyramid_steps=(2, 2, 2)
        )
        cogvideox = runs.Workload("cogvideox", _request(height=480, width=720, frames=49, steps=6))
        wan = runs.Workload("wan", _wan_request(height=480, width=832, frames=81, steps=3))
        specs = (models.HELIOS_DISTILLED, models.COGVIDEOX_2B, models.COGVIDEOX_5B)
        wan_specs = (models.WAN_1_3B, models.WAN_14B, models.WAN_22_A14B)
    one_chunk = replace(helios, request=replace(helios.request, frames=33))
    # Two steps: with 0.875 as the boundary, the sampler's first timestep (1000) goes to the high-noise
    # expert and its second (750) to the low-noise one.
    experts = replace(
        wan, request=replace(wan.request, steps=2, guidance=4.0, guidance_2=3.0), projected_steps=None
    )
    # Ordered so that each model is built once, but Helios' memory rows (rebuilt: the same seed gives
    # the same weights) come last: they take longest and matter least for a partial run.
    return [
        Case("helios-distilled", specs[0], helios),
        Case("cogvideox-2b", specs[1], cogvideox),
        Case("cogvideox-5b", specs[2], cogvideox),
        Case("wan2.1-t2v-1.3b", wan_specs[0], wan),
        Case("wan2.1-t2v-14b", wan_specs[1], wan),
        Case("memory-cogvideox-5b", specs[2], cogvideox, memory=True),
        Case("memory-wan2.2-a14b", wan_specs[2], experts, memory=True, plans=EXPERT_PLANS, cards=(None,)),
        Case("memory-helios-distilled", specs[0], one_chunk, memory=True),
    ]


def _request(**sizes) -> Request:
    return Request(mode="t2v", prompt=PROMPT, seed=1, **{"guidance": 6.0, **sizes})


def _wan_request(**sizes) -> Request:
    """Wan's defaults: guidance 5, UMT5's 512 text tokens."""
    return _request(guidance=5.0, max_sequence_length=512, **sizes)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    names = [case.name for case in cases(smoke=False)]
    parser.add_argument("--smoke", action="store_true", help="tiny configs on the CPU (what CI runs)")
    parser.add_argument("--json", type=Path, help="write the rows here as JSON (after every row)")
    parser.add_argument("--only", action="append", choices=names, help="run only this case (repeatable)")
    parser.add_argument(
        "--family",
        action="append",
        choices=sorted({case.spec.family for case in cases(smoke=False)}),
        help="run only this family's cases (repeatable)",
    )
    parser.add_argument("--skip-memory", action="store_true", help="leave out the memory table")
    parser.add_argument(
        "--budget", type=float, default=420.0, help="seconds after which rows are skipped (default 420)"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    device = "cpu" if args.smoke else "cuda"
    if device == "cuda" and not torch.cuda.is_available():
        print("error: the GPU suite needs a CUDA GPU (run with --smoke on the CPU)", file=sys.stderr)
        return 2
    dtype = torch.float32 if args.smoke else torch.bfloat16
    if args.smoke:
        levers.COMPILE_OPTIONS = {"backend": "aot_eager", "fullgraph": False}  # no C++ builds on a CPU
    chosen = chosen_cases(args)
    suite = Suite(device, dtype, time.monotonic() + args.budget, header(device), args.json)
    for case in chosen:
        suite.run_case(case)
    suite.release()
    print(tables(suite.rows, suite.header), flush=True)
    return 0


def chosen_cases(args: argparse.Namespace) -> list[Case]:
    """The cases `--only`, `--family` and `--skip-memory` leave, in the suite's order."""
    return [
        case
        for case in cases(args.smoke)
        if (not args.only or case.name in args.only)
        and (not args.family or case.spec.family in args.family)
        and not (case.memory and args.skip_memory)
    ]


class Suite:
    """Runs cases in order, building each model once and keeping diffusers' frames per case."""

    def __init__(self, device: str, dtype: torch.dtype, deadline: float, header: dict, out: Path | None):
        self.device, self.dtype, self.deadline, self.header, self.out = device, dtype, deadline, header, out
        self.rows: list[Row] = []
        self.references: dict[str, object] = {}  # case's model name -> diffusers' frames
        self.built: models.Built | None = None

    def run_case(self, case: Case) -> None:
        if case.memory and self.device != "cuda" and any(case.cards):
            for label in _plan_labels(case.plans):
                self.add(Row("memory", case.name, label, note="skipped: needs CUDA"))
            return
        if time.monotonic() > self.deadline:
            self.add(
                Row("memory" if case.memory else "speed", case.name, "all", note="skipped: over --budget")
            )
            return
        built = self.model(case.spec)
        if case.memory:
            self.memory_rows(case, built)
        else:
            self.speed_rows(case, built)

    def model(self, spec: models.ModelSpec) -> models.Built:
        if self.built is None or self.built.spec != spec:
            self.release()
            start = time.perf_counter()
            self.built = models.build(spec, self.device, self.dtype)
            print(f"built {spec.name} in {time.perf_counter() - start:.1f} s", flush=True)
        return self.built

    def release(self) -> None:
        self.built = None
        torch._dynamo.reset()  # compiled graphs may hold the last model's tensors
        _free()

    def speed_rows(self, case: Case, built: models.Built) -> None:
        reference = self.row(case, "diffusers", lambda: runs.diffusers_run(built.pipe, case.workload))
        if reference is not None:
            self.references[case.spec.name] = reference.frames
        for run, runtime in speed_runtimes(self.device, self.dtype):
            if isinstance(runtime, str):
                self.add(Row("speed", case.name, run, note=f"skipped: {runtime}"))
                continue
            if runtime.compile:
                torch._dynamo.reset()  # each compiled row pays its own compile, as a fresh process would
            self.row(case, run, lambda runtime=runtime: _vidgen(built, case, runtime))
            _free()
        if case.workload.family == "helios":
            eager = speed_runtimes(self.device, self.dtype)[0][1]
            self.row(case, DECODE_AHEAD_RUN, lambda: _vidgen(built, case, eager, decode_ahead=True))
            _free()

    def memory_rows(self, case: Case, built: models.Built) -> None:
        built.pipe.to("cpu")  # every plan starts from weights in host memory, as after loading
        _free()
        out_of_memory: set[str] = set()
        for card in case.cards:
            for (offload, quantize), label in zip(case.plans, _plan_labels(case.plans), strict=True):
                if label in out_of_memory:
                    note = f"skipped: out of memory with {max(case.cards)} GB"
                    self.add(Row("memory", case.name, label, card_gb=card, note=note))
                    continue
                runtime = Runtime(self.device, self.dtype, offload=offload, quantize=quantize)
                with _capped(card):
                    row = self.row(
                        case, label, lambda runtime=runtime: _vidgen(built, case, runtime, fresh=True), card
                    )
                if row is None and "out of memory" in self.rows[-1].note:
                    out_of_memory.add(label)
                _free()

    def row(self, case: Case, run: str, work, card: int | None = None) -> runs.Measure | None:
        """One timed row: measured, out of memory, failed (with its traceback on stderr) or skipped."""
        table = "memory" if case.memory else "speed"
        row = Row(table, case.name, run, card_gb=card)
        if time.monotonic() > self.deadline:
            row.note = "skipped: over --budget"
            self.add(row)
            return None
        measure = None
        try:
            measure = work()
        except torch.OutOfMemoryError:
            row.note = "out of memory"
        except Exception as error:  # one broken row must not cost the rest of a one-shot GPU run
            traceback.print_exc()
            row.note = f"failed: {type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
        if measure is not None:
            family = case.workload.family
            measure.layer_scale = case.spec.layer_scale
            reference = self.references.get(case.spec.name)
            row.seconds = measure.seconds(family)
            row.rate = measure.rate(family, case.workload.chunk_frames)
            row.peak_gb = None if measure.peak_bytes is None else measure.peak_bytes / GB
            if reference is not None and run != "diffusers":
                row.max_uint8_difference = runs.largest_difference(measure.frames, reference)
            row.note = measure.detail(family)
        self.add(row)
        return measure

    def add(self, row: Row) -> None:
        self.rows.append(row)
        print(" | ".join(f"{value}" for value in asdict(row).values()), flush=True)
        if self.out:
            document = {**self.header, "rows": [asdict(r) for r in self.rows]}
            self.out.write_text(json.dumps(document, indent=1))


def speed_runtimes(device: str, dtype: torch.dtype) -> list[tuple[str, Runtime | str]]:
    """vidgen's speed rows: (name, runtime), or (name, why it is skipped)."""
    # keep_models: on a card that holds everything nothing is parked between stages.
    eager = Runtime(device=device, dtype=dtype, attention="sdpa", keep_models=True)
    best = resolve_attention("auto", device, dtype)
    try:
        check_quantize("fp8", device)
        fp8: Runtime | str = replace(eager, quantize="fp8")
    except VidgenError as error:
        fp8 = error.message
    return [
        ("vidgen eager", eager),
        (f"vidgen --attention {best}", replace(eager, attention=best)),
        ("vidgen --compile", replace(eager, compile=True)),
        ("vidgen --cache first-block", replace(eager, cache="first-block")),
        ("vidgen --quantize fp8", fp8),
    ]


def _vidgen(
    built: models.Built, case: Case, runtime: Runtime, fresh: bool = False, decode_ahead: bool = False
) -> runs.Measure:
    """vidgen on the case's workload; `fresh` gives it its own text encoder and VAE objects (sharing the
    weights), for plans whose hooks would otherwise stay on diffusers' pipeline's parts."""
    parts = {}
    if fresh:
        parts = dict(text_encoder=models.fresh(built.pipe.text_encoder), vae=models.fresh(built.pipe.vae))
    model = models.vidgen_model(built, runtime, models.vidgen_transformer(built), **parts)
    if case.memory and built.spec.boundary_ratio is not None:
        # Parked on the CPU, each part would be a second host copy beside diffusers' pipeline's (64 GiB:
        # two 26.6 GiB experts, the 10.6 GiB text encoder): 128 GiB in all, the GPU machine's RAM. On
        # meta the device memory is freed alike; each part runs once per video, so none comes back.
        model.park = "meta"
    return runs.vidgen_run(model, case.workload, runtime, decode_ahead)


def _plan_labels(plans: tuple[tuple[str, str], ...] = MEMORY_PLANS) -> list[str]:
    return [
        f"offload {offload}" + (f" + {quantize}" if quantize != "none" else "") for offload, quantize in plans
    ]


class _capped:
    """Usable GPU memory capped at `card` GB while inside, standing for a smaller card; None: no cap."""

    def __init__(self, card: int | None) -> None:
        self.card = card

    def __enter__(self) -> None:
        _free()
        if self.card is None:
            return
        total = torch.cuda.get_device_properties(0).total_memory
        torch.cuda.set_per_process_memory_fraction(min(1.0, self.card * GB / total))

    def __exit__(self, *exc) -> None:
        if self.card is not None:
            torch.cuda.set_per_process_memory_fraction(1.0)


def _free() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def header(device: str) -> dict:
    versions = {"python": platform.python_version()}
    for package in ("torch", "diffusers", "transformers", "accelerate", "torchao", "triton"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "not installed"
    card = (
        torch.cuda.get_device_name(0) if device == "cuda" else f"CPU smoke ({platform.processor() or 'cpu'})"
    )
    return {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "card": card,
        "smoke": device != "cuda",
        "versions": versions,
    }


def tables(rows: list[Row], header: dict) -> str:
    versions = ", ".join(f"{name} {version}" for name, version in header["versions"].items())
    lines = [f"{header['date']} | {header['card']} | {versions}", ""]
    reference = {row.case: row.seconds for row in rows if row.run == "diffusers" and row.seconds}
    speed = [row for row in rows if row.table == "speed"]
    memory = [row for row in rows if row.table == "memory"]
    if speed:
        lines.append(
            f"{'case':<24} {'run':<28} {'seconds':>8} {'frames/s':>9} {'vs diffusers':>12} "
            f"{'peak GB':>8} {'max diff':>8}  note"
        )
        for row in speed:
            ratio = (
                reference.get(row.case, 0) / row.seconds if row.seconds and reference.get(row.case) else None
            )
            lines.append(
                f"{row.case:<24} {row.run:<28} {_num(row.seconds, 8, 2)} {_num(row.rate, 9, 2)} "
                f"{_num(ratio, 11, 2, 'x')} {_num(row.peak_gb, 8, 1)} "
                f"{_num(row.max_uint8_difference, 8)}  {row.note}"
            )
        lines.append("")
    if memory:
        lines.append(
            f"{'case':<24} {'card':>5} {'plan':<28} {'seconds':>8} {'frames/s':>9} {'peak GB':>8} "
            f"{'max diff':>8}  note"
        )
        for row in memory:
            card = f"{row.card_gb} GB" if row.card_gb else "-"
            lines.append(
                f"{row.case:<24} {card:>5} {row.run:<28} {_num(row.seconds, 8, 2)} {_num(row.rate, 9, 2)} "
                f"{_num(row.peak_gb, 8, 1)} {_num(row.max_uint8_difference, 8)}  {row.note}"
            )
    return "\n".join(lines).rstrip()


def _num(value: float | None, width: int, digits: int = 0, unit: str = "") -> str:
    return f"{'-':>{width + len(unit)}}" if value is None else f"{value:{width}.{digits}f}{unit}"


if __name__ == "__main__":
    sys.exit(main())
