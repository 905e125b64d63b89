"""Failures only a real process shows: a file-size limit cutting the encoder off, signals, a closed pipe.

Each test runs `python -m vidgen` in its own process on a tiny model, with one denoising step; the tiny
model is built first, in this process, so that the limits and signals meet only the run under test.
"""

import json
import os
import resource
import signal
import subprocess
import sys
import time

import imageio.v3 as iio
import numpy as np
import pytest

from vidgen.families import registry
from vidgen.io.probe import frame_count
from vidgen.io.writer import VideoWriter

VIDGEN = [sys.executable, "-m", "vidgen"]
T2V = [*VIDGEN, "t2v", "--model", "tiny-cogvideox", "a cat walks", "--seed", "1", "--steps", "1", "--quiet"]


@pytest.fixture
def env(tmp_path):
    registry.ensure_tiny("cogvideox", "t2v")
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
    assert records[-1]["status"] == "failed" and "ok" not in [record["status"] for record in records]
    assert "size limit" in records[-1]["error"]
    assert not [name for name in os.listdir(tmp_path / "out") if name.startswith("00001")]


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
    registry.ensure_tiny("helios", "base")
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


# `vidgen` with its writer stopped once it holds a hidden partial output (ffmpeg holds the first frame):
# a signal sent after the "writing" line lands while the video is being written. Also used by
# test_encoder_lifetime.py.
WRITING_SLOWLY = """
import sys, time
from vidgen.io import writer
write = writer.VideoWriter.write
def slow(self, frames):
    write(self, frames[:1])
    print("writing", file=sys.stderr, flush=True)
    time.sleep(120)
writer.VideoWriter.write = slow
from vidgen.cli import app
app(prog_name="vidgen")
"""


def signal_while_writing(tmp_path, env, signum) -> tuple[int, str]:
    command = [sys.executable, "-c", WRITING_SLOWLY, *T2V[3:], "-o", "a.mp4"]
    process = subprocess.Popen(command, cwd=tmp_path, env=env, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stderr.readline() == "writing\n"
        assert any(".partial" in name for name in os.listdir(tmp_path))
        process.send_signal(signum)
        stderr = process.stderr.read()
        process.wait(timeout=60)
    finally:
        process.kill()
    return process.returncode, stderr


def test_sigterm_while_writing_stops_as_ctrl_c_does(tmp_path, env):
    returncode, stderr = signal_while_writing(tmp_path, env, signal.SIGTERM)
    assert returncode == 143, stderr
    assert stderr.strip().splitlines() == ["error: interrupted; no output was written"]
    assert os.listdir(tmp_path) == []  # no hidden partial left


def test_the_partial_a_killed_run_left_is_removed_when_the_same_output_is_written(tmp_path, env):
    returncode, _ = signal_while_writing(tmp_path, env, signal.SIGKILL)
    assert returncode == -signal.SIGKILL
    assert [name for name in os.listdir(tmp_path) if ".partial" in name]  # SIGKILL cannot be handled
    with VideoWriter.open(tmp_path / "a.mp4", fps=8, format="mp4") as writer:
        writer.write(np.zeros((2, 16, 16, 3), np.uint8))
    assert os.listdir(tmp_path) == ["a.mp4"]


def test_sigterm_stops_a_stream_keeping_its_chunks_and_a_sidecar_that_says_so(tmp_path, helios_env):
    process = subprocess.Popen(
        [*STREAM, "--frames", str(33 * 50), "-o", "long.mp4"],
        cwd=tmp_path,
        env=helios_env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while not (tmp_path / "long.mp4.json").exists() and time.monotonic() < deadline:
            time.sleep(0.1)  # the sidecar appears with the first chunk
        process.send_signal(signal.SIGTERM)
        stderr = process.stderr.read()
        process.wait(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 143, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: interrupted; long.mp4 holds "), stderr
    sidecar = json.loads((tmp_path / "long.mp4.json").read_text())
    assert sidecar["stream"]["status"] == "interrupted"
    assert sidecar["output"]["frames"] == len(iio.imread(tmp_path / "long.mp4")) > 0
    assert sorted(os.listdir(tmp_path)) == ["long.mp4", "long.mp4.json"]
