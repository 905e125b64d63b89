"""Whole-video speed of vidgen against diffusers' own pipelines, same weights, same process.

Each case runs diffusers' pipeline from a model folder as the reference, then vidgen's pipeline on the
same folder: eager (SDPA), with the best attention backend installed (`--attention auto`), with
`--compile`, and with `--cache first-block`. Every vidgen row says how far its frames are from
diffusers' (largest uint8 difference), so a fast row that changed the video shows it. A table is
printed last and the rows are written as JSON.

    python bench/gpu_suite.py --smoke              # tiny models on the CPU, a minute or two
    python bench/gpu_suite.py --smoke --json out.json

`--smoke` runs the same code on vidgen's tiny models (CogVideoX T2V, Helios-Distilled) on the CPU,
compiling with the `aot_eager` backend (inductor's C++ builds take minutes on a small CPU); the test
suite runs it so the suite cannot rot. The released-size GPU run (random weights at CogVideoX-2b/-5b and
Helios-Distilled sizes, bf16) is not written yet: without `--smoke` the script says so and exits 2.
"""

import argparse
import json
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from vidgen import levers, tiny  # noqa: E402
from vidgen.request import Request, Runtime  # noqa: E402
from vidgen.validate.runtime import resolve_attention  # noqa: E402


@dataclass(frozen=True)
class Case:
    name: str
    family: str  # "cogvideox" | "helios"
    variant: str  # vidgen.tiny's variant
    request: Request
    pyramid_steps: tuple[int, ...] = ()  # Helios-Distilled


@dataclass
class Row:
    case: str
    run: str  # "diffusers", "vidgen eager", ...
    seconds: float
    frames: int
    fps: float
    max_uint8_difference: int | None  # against diffusers' frames; None for diffusers itself
    note: str = ""


SMOKE_CASES = (
    Case(
        "cogvideox-t2v (tiny)",
        "cogvideox",
        "t2v",
        Request(
            mode="t2v", prompt="a cat walks", seed=1, steps=4, guidance=6.0, height=64, width=96, frames=9
        ),
    ),
    Case(
        "helios-distilled (tiny)",
        "helios",
        "distilled",
        Request(mode="t2v", prompt="a cat walks", seed=1, guidance=1.0, height=64, width=128, frames=33),
        pyramid_steps=(1, 1, 1),
    ),
)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny models on the CPU (what CI runs)")
    parser.add_argument("--json", type=Path, help="write the rows here as JSON")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    if not args.smoke:
        raise SystemExit("error: the released-size GPU run is not written yet (run with --smoke)")
    torch.manual_seed(0)
    levers.COMPILE_OPTIONS = {"backend": "aot_eager", "fullgraph": False}
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="vidgen-suite-") as cache:
        for case in SMOKE_CASES:
            folder = tiny.ensure_tiny(case.family, case.variant, Path(cache))
            rows += run_case(case, folder, device="cpu")
    print(table(rows))
    if args.json:
        versions = {"torch": torch.__version__, "python": platform.python_version()}
        args.json.write_text(json.dumps({"versions": versions, "rows": [asdict(r) for r in rows]}, indent=1))


def run_case(case: Case, folder: Path, device: str) -> list[Row]:
    reference, seconds = timed(lambda: diffusers_frames(case, folder, device))
    rows = [Row(case.name, "diffusers", seconds, len(reference), len(reference) / seconds, None)]
    eager = Runtime(device=device, attention="sdpa")
    best = resolve_attention("auto", device, eager.dtype)
    for run, runtime in (
        ("vidgen eager", eager),
        (f"vidgen --attention {best}", replace(eager, attention=best)),
        ("vidgen --compile", replace(eager, compile=True)),
        ("vidgen --cache first-block", replace(eager, cache="first-block")),
    ):
        if runtime.compile:
            torch._dynamo.reset()  # each compiled row pays its own compile, as a fresh process would
        frames, seconds = timed(lambda runtime=runtime: vidgen_frames(case, folder, runtime))
        difference = int(np.abs(frames.astype(int) - reference.astype(int)).max())
        rows.append(Row(case.name, run, seconds, len(frames), len(frames) / seconds, difference))
    return rows


def timed(work: Callable[[], np.ndarray]) -> tuple[np.ndarray, float]:
    start = time.perf_counter()
    frames = work()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return frames, time.perf_counter() - start


def diffusers_frames(case: Case, folder: Path, device: str) -> np.ndarray:
    """uint8 [F, H, W, 3] from diffusers' own pipeline for the folder (loading included, as for vidgen)."""
    import diffusers

    request = case.request
    pipe = diffusers.DiffusionPipeline.from_pretrained(folder).to(device)
    pipe.set_progress_bar_config(disable=True)
    inputs = dict(
        prompt=request.prompt,
        guidance_scale=request.guidance,
        height=request.height,
        width=request.width,
        num_frames=request.frames,
        output_type="np",
        generator=torch.Generator("cpu").manual_seed(request.seed),
    )
    if case.pyramid_steps:
        inputs.update(pyramid_num_inference_steps_list=list(case.pyramid_steps), is_amplify_first_chunk=True)
    else:
        inputs.update(num_inference_steps=request.steps)
    with torch.no_grad():
        frames = pipe(**inputs).frames[0]
    return (frames * 255).round().astype(np.uint8)


def vidgen_frames(case: Case, folder: Path, runtime: Runtime) -> np.ndarray:
    """uint8 [F, H, W, 3] from vidgen's pipeline for the folder (loading included)."""
    from vidgen.pipelines import cogvideox, helios

    if case.family == "cogvideox":
        model = cogvideox.load(folder, runtime)
        return cogvideox.generate(model, case.request, runtime).frames
    model = helios.load(folder, runtime)
    settings = helios.HeliosSettings(pyramid_steps=case.pyramid_steps, amplify_first_chunk=True)
    return np.concatenate(list(helios.generate_chunks(model, case.request, settings, runtime)))


def table(rows: list[Row]) -> str:
    lines = [f"{'case':<26} {'run':<28} {'seconds':>8} {'frames/s':>9} {'vs diffusers':>13} {'max diff':>8}"]
    reference = {row.case: row.seconds for row in rows if row.run == "diffusers"}
    for row in rows:
        speedup = reference[row.case] / row.seconds
        difference = "-" if row.max_uint8_difference is None else str(row.max_uint8_difference)
        lines.append(
            f"{row.case:<26} {row.run:<28} {row.seconds:8.2f} {row.fps:9.2f} {speedup:12.2f}x {difference:>8}"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
