"""`bench/gpu_suite.py --smoke` runs the GPU suite's own code (in-memory random-weight models, every
run row, the memory table) on tiny configs on the CPU, so the one-shot GPU run cannot rot."""

import json
import os
import subprocess
import sys
from pathlib import Path

SUITE = Path(__file__).resolve().parents[1] / "bench" / "gpu_suite.py"
SPEED_CASES = ("helios-distilled", "cogvideox-2b", "cogvideox-5b")
MEMORY_CASES = ("memory-cogvideox-5b", "memory-helios-distilled")
VIDGEN_RUNS = ("vidgen eager", "vidgen --attention sdpa", "vidgen --compile", "vidgen --cache first-block")
DECODE_AHEAD = "vidgen stream decode ahead"  # Helios only; decoded in turn on the CPU, and says so
PLANS = ("none", "model", "group", "group + fp8-storage", "sequential")


def test_smoke_suite_has_every_row_and_vidgen_frames_equal_diffusers(tmp_path):
    out = tmp_path / "suite.json"
    done = subprocess.run(
        [sys.executable, str(SUITE), "--smoke", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    document = json.loads(out.read_text())
    assert document["smoke"] and document["versions"]["torch"] and document["date"]
    rows = document["rows"]
    by_case: dict[str, list[dict]] = {}
    for row in rows:
        by_case.setdefault(row["case"], []).append(row)
    assert list(by_case) == [*SPEED_CASES, *MEMORY_CASES]

    for case in SPEED_CASES:
        runs = {row["run"]: row for row in by_case[case]}
        ahead = [DECODE_AHEAD] if case == "helios-distilled" else []
        assert list(runs) == ["diffusers", *VIDGEN_RUNS, "vidgen --quantize fp8", *ahead]
        for name in ["diffusers", *VIDGEN_RUNS, *ahead]:
            row = runs[name]
            assert row["seconds"] > 0 and row["rate"] > 0, row
            assert not row["note"].startswith(("failed", "skipped")), row
        for name in [*VIDGEN_RUNS, *ahead]:
            if "cache" not in name:  # the step cache skips steps: its frames may differ
                assert runs[name]["max_uint8_difference"] <= 1, runs[name]  # the same video as diffusers'
            else:
                assert runs[name]["max_uint8_difference"] is not None
        if ahead:
            assert runs[DECODE_AHEAD]["note"].endswith(
                "decoded in turn: no second stream here (CPU or offload)"
            )
        fp8 = runs["vidgen --quantize fp8"]
        assert fp8["seconds"] is None and fp8["note"].startswith("skipped: --quantize fp8 needs"), fp8

    for case in MEMORY_CASES:
        plans = [row["run"] for row in by_case[case]]
        assert plans == [f"offload {plan}" for plan in PLANS]
        assert all(row["note"] == "skipped: needs CUDA" for row in by_case[case])

    output = done.stdout.strip().splitlines()
    assert output[-1].startswith("memory-helios-distilled") and "offload sequential" in output[-1]
    table = output[next(i for i, line in enumerate(output) if line.startswith("case ")) :]  # printed last
    assert any(line.startswith("helios-distilled") and "vidgen --compile" in line for line in table)


def test_gpu_run_without_a_gpu_says_so_and_exits_2():
    hidden = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}  # no GPU even where one exists
    done = subprocess.run(
        [sys.executable, str(SUITE), "--skip-memory"], capture_output=True, text=True, env=hidden
    )
    assert done.returncode == 2
    assert "needs a CUDA GPU" in done.stderr and "--smoke" in done.stderr
