"""Failures only a real process shows: a file-size limit cutting the encoder off, signals, a closed pipe.

Each test runs `python -m vidgen` in its own process on a tiny model, with one denoising step; the tiny
model is built first, in this process, so that the limits and signals meet only the run under test.
"""

import json
import os
import resource
import subprocess
import sys

import imageio.v3 as iio
import pytest

from vidgen import tiny
from vidgen.io.probe import frame_count

VIDGEN = [sys.executable, "-m", "vidgen"]
T2V = [*VIDGEN, "t2v", "--model", "tiny-cogvideox", "a cat walks", "--seed", "1", "--steps", "1", "--quiet"]


@pytest.fixture
def env(tmp_path):
    tiny.ensure_tiny("cogvideox", "t2v")
    return {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}


def file_size_limit(limit: int):
    """A preexec_fn: the child may write no file past `limit` bytes (as `ulimit -f` does)."""
    return lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))


def test_an_encoder_cut_off_by_a_file_size_limit_is_a_failure_that_leaves_nothing(tmp_path, env):
    # The video is about 38 KB; ffmpeg is stopped by SIGXFSZ at 20 KB.
    run = subprocess.run(
        [*T2V, "-o", "a.mp4"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        preexec_fn=file_size_limit(20_000),
    )
    assert run.returncode == 1, run.stderr
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and "writing 'a.mp4' failed" in lines[0] and "size limit" in lines[0], run.stderr
    assert os.listdir(tmp_path) == []  # no video, no sidecar, no hidden partial


def test_batch_records_a_job_whose_encoder_failed_as_failed(tmp_path, env):
    (tmp_path / "jobs.jsonl").write_text(json.dumps({"prompt": "a cat", "seed": 1}) + "\n")
    command = [*VIDGEN, "batch", "jobs.jsonl", "-o", "out", "--model", "tiny-cogvideox", "--steps", "1", "-q"]
    run = subprocess.run(
        command, cwd=tmp_path, env=env, capture_output=True, text=True, preexec_fn=file_size_limit(20_000)
    )
    assert run.returncode == 1, run.stderr
    records = [json.loads(line) for line in (tmp_path / "out" / "manifest.jsonl").read_text().splitlines()]
    assert [record["status"] for record in records] == ["failed"]
    assert "size limit" in records[0]["error"]
    assert sorted(os.listdir(tmp_path / "out")) == ["manifest.jsonl"]


STREAM = [
    *VIDGEN,
    "stream",
    "--model",
    "tiny-helios",
    "a cat walks",
    "--seed",
    "1",
    "--steps",
    "1",
    "--quiet",
]


@pytest.fixture
def helios_env(env):
    tiny.ensure_tiny("helios", "base")
    return env


def test_a_closed_pipe_ends_the_stream_with_one_line_and_exit_141(tmp_path, helios_env):
    process = subprocess.Popen(
        [*STREAM, "--frames", str(33 * 20), "-o", "-"],
        cwd=tmp_path,
        env=helios_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert len(process.stdout.read(5000)) == 5000  # like `| head -c 5000`
        process.stdout.close()
        stderr = process.stderr.read().decode()
        process.wait(timeout=120)
    finally:
        process.kill()
    assert process.returncode == 141, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and "closed" in lines[0] and "Traceback" not in stderr, stderr


def test_a_full_disk_mid_stream_is_one_line_and_keeps_the_finished_chunks_playable(tmp_path, helios_env):
    # Each tiny chunk is about 16 KB: the limit stops the third chunk part-way through.
    run = subprocess.run(
        [*STREAM, "--frames", str(33 * 6), "-o", "long.mp4"],
        cwd=tmp_path,
        env=helios_env,
        capture_output=True,
        text=True,
        preexec_fn=file_size_limit(40_000),
    )
    assert frame_count(tmp_path / "long.mp4") == 66  # two whole chunks, no torn fragment after them
    assert len(iio.imread(tmp_path / "long.mp4")) == 66
    assert run.returncode == 1, run.stderr
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and "writing 'long.mp4' failed: File too large" in lines[0], run.stderr
    assert "keeps the 66 frames" in lines[0]
    sidecar = json.loads((tmp_path / "long.mp4.json").read_text())
    assert sidecar["stream"]["status"] == "failed" and sidecar["output"]["frames"] == 66
    assert sorted(os.listdir(tmp_path)) == ["long.mp4", "long.mp4.json"]
