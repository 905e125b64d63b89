"""`bench/gpu_suite.py --smoke` runs end to end on the tiny models, so the GPU suite cannot rot."""

import json
import subprocess
import sys
from pathlib import Path

SUITE = Path(__file__).resolve().parents[1] / "bench" / "gpu_suite.py"


def test_smoke_suite_prints_a_table_and_writes_every_row(tmp_path):
    out = tmp_path / "suite.json"
    done = subprocess.run(
        [sys.executable, str(SUITE), "--smoke", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    rows = json.loads(out.read_text())["rows"]
    runs = [row["run"] for row in rows]
    each_case = ["diffusers", "vidgen eager", "vidgen --attention sdpa", "vidgen --compile"]
    assert runs == [*each_case, "vidgen --cache first-block"] * 2
    for row in rows:
        assert row["seconds"] > 0 and row["frames"] in (9, 33)
        if row["run"] != "diffusers" and "cache" not in row["run"]:
            assert row["max_uint8_difference"] <= 1, row  # the same video as diffusers'
    assert done.stdout.strip().splitlines()[-1].startswith("helios-distilled (tiny)")
