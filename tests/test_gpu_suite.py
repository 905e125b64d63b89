"""`bench/gpu_suite.py --smoke` runs the GPU suite's own code (in-memory random-weight models, every
run row, the memory table) on tiny configs on the CPU, so the one-shot GPU run cannot rot."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

SUITE = Path(__file__).resolve().parents[1] / "bench" / "gpu_suite.py"
SPEED_CASES = ("helios-distilled", "cogvideox-2b", "cogvideox-5b", "wan2.1-t2v-1.3b", "wan2.1-t2v-14b")
MEMORY_CASES = ("memory-cogvideox-5b", "memory-wan2.2-a14b", "memory-helios-distilled")
CAPPED_MEMORY_CASES = ("memory-cogvideox-5b", "memory-helios-distilled")  # caps need CUDA: skipped here
VIDGEN_RUNS = ("vidgen eager", "vidgen --attention sdpa", "vidgen --compile", "vidgen --cache first-block")
DECODE_AHEAD = "vidgen stream decode ahead"  # Helios only; decoded in turn on the CPU, and says so
PLANS = ("none", "model", "group", "group + fp8-storage", "sequential")


FAMILIES = ("cogvideox", "helios", "wan")


def family_of(case: str) -> str:
    return next(family for family in FAMILIES if family in case)


# One family a call (`--family`), so the test workers share the suite's few minutes.
@pytest.mark.parametrize("family", FAMILIES)
def test_smoke_suite_has_every_row_and_vidgen_frames_equal_diffusers(family, tmp_path):
    out = tmp_path / "suite.json"
    done = subprocess.run(
        [sys.executable, str(SUITE), "--smoke", "--family", family, "--json", str(out)],
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
    speed = [case for case in SPEED_CASES if family_of(case) == family]
    memory = [case for case in MEMORY_CASES if family_of(case) == family]
    assert list(by_case) == [*speed, *memory]

    for case in speed:
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

    for case in (case for case in CAPPED_MEMORY_CASES if case in by_case):
        plans = [row["run"] for row in by_case[case]]
        assert plans == [f"offload {plan}" for plan in PLANS]
        assert all(row["note"] == "skipped: needs CUDA" for row in by_case[case])

    if family != "wan":
        return
    # Wan 2.2 A14B's two experts under offload, uncapped, so they run on the CPU too: one step each.
    experts = by_case["memory-wan2.2-a14b"]
    assert [row["run"] for row in experts] == ["offload model", "offload group"]
    for row in experts:
        assert row["seconds"] > 0 and row["card_gb"] is None, row
        assert "transformer calls: high 2, low 2;" in row["note"], row  # one guided step of each expert

    # The 14B is built with fewer blocks than released: its step time is scaled, and says so.
    wan_14b = {row["run"]: row for row in by_case["wan2.1-t2v-14b"]}
    assert all(
        "(x2: released / built blocks)" in wan_14b[name]["note"] for name in ["diffusers", *VIDGEN_RUNS]
    )
    note = wan_14b["diffusers"]["note"]
    step, decode = (float(n) for n in re.search(r"step ([\d.]+) s .*decode ([\d.]+) s", note).groups())
    assert abs(wan_14b["diffusers"]["seconds"] - (50 * step + decode)) < 0.05  # the note's rounding


def test_gpu_run_without_a_gpu_says_so_and_exits_2():
    hidden = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}  # no GPU even where one exists
    done = subprocess.run(
        [sys.executable, str(SUITE), "--skip-memory"], capture_output=True, text=True, env=hidden
    )
    assert done.returncode == 2
    assert "needs a CUDA GPU" in done.stderr and "--smoke" in done.stderr


def test_family_picks_its_cases_for_a_device_call_of_their_own():
    sys.path.insert(0, str(SUITE.parent))
    import gpu_suite

    def names(*argv: str) -> list[str]:
        return [case.name for case in gpu_suite.chosen_cases(gpu_suite.parse_args(list(argv)))]

    wan = ["wan2.1-t2v-1.3b", "wan2.1-t2v-14b", "memory-wan2.2-a14b"]
    assert names("--family", "wan") == wan
    assert names("--family", "wan", "--skip-memory") == wan[:2]
    assert names("--family", "wan", "--family", "helios") == [
        "helios-distilled",
        *wan,
        "memory-helios-distilled",
    ]
    assert names() == [*SPEED_CASES, *MEMORY_CASES]
