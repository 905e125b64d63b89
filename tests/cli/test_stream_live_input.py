"""`vidgen stream --live` fed input no one types: an endless line, or no stdin at all."""

import json
import os
import shlex
import subprocess
import sys

import pytest

STREAM = [sys.executable, "-m", "vidgen", "stream", "--live", "--model", "tiny-helios", "--seed", "1"]
FAST = ["--steps", "1", "--guidance", "1", "--frames", "99", "-o", "live.mp4"]


@pytest.fixture
def env(tmp_path):
    return {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}


def shell(line: str, cwd, env) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-c", line], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_an_endless_line_is_cut_with_one_warning_and_the_stream_runs_to_its_end(tmp_path, env):
    run = shell(f"tr '\\0' a </dev/zero | {shlex.join([*STREAM, 'a cat', *FAST])}", tmp_path, env)
    assert run.returncode == 0, run.stderr
    warnings = [line for line in run.stderr.splitlines() if line.startswith("warning:")]
    assert warnings == ["warning: a line over 65536 bytes: its first 65536 are read, the rest dropped"]
    assert json.loads((tmp_path / "live.mp4.json").read_text())["stream"]["status"] == "done"


def test_a_closed_stdin_ends_the_stream_after_the_first_chunk_without_a_traceback(tmp_path, env):
    run = shell(f"exec {shlex.join([*STREAM, 'a cat', *FAST])} <&-", tmp_path, env)
    assert run.returncode == 0 and "Traceback" not in run.stderr, run.stderr
    stream = json.loads((tmp_path / "live.mp4.json").read_text())["stream"]
    assert (stream["status"], stream["chunks"]) == ("ended", 1)
