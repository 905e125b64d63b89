"""Two runs writing the same name: without --overwrite the one that finishes second fails with "already
exists" and the first one's output stays; nothing replaces a file silently.

Both runs check that the name is free before generating, so the check alone cannot tell: the output is
put in place by a step that fails when the name is taken (vidgen.io.writer.publish)."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from vidgen.families import registry
from vidgen.io import writer as writers
from vidgen.io.stream_writer import Mp4Stream, PngStream
from vidgen.io.writer import VideoWriter

FRAMES = np.zeros((2, 16, 16, 3), np.uint8)
T2V = ("t2v", "a cat", "--model", "tiny-cogvideox", "--steps", "1", "--seed", "1", "--quiet")


@pytest.mark.parametrize("format", ["mp4", "gif", "png"])
def test_the_writer_that_finishes_second_fails_and_leaves_the_first_output(tmp_path, format):
    path = tmp_path / ("out" if format == "png" else f"out.{format}")
    first = VideoWriter.open(path, fps=8, format=format, replace=False)
    second = VideoWriter.open(path, fps=8, format=format, replace=False)
    first.write(FRAMES)
    second.write(FRAMES + 255)
    first.close()
    kept = sorted(path.iterdir()) if format == "png" else path.read_bytes()
    with pytest.raises(FileExistsError):
        second.close()
    assert (sorted(path.iterdir()) if format == "png" else path.read_bytes()) == kept
    assert os.listdir(tmp_path) == [path.name]  # the second's partial is gone too


def test_a_writer_that_may_replace_still_replaces(tmp_path):
    path = tmp_path / "out.mp4"
    path.write_bytes(b"old")
    with VideoWriter.open(path, fps=8, format="mp4") as writer:
        writer.write(FRAMES)
    assert path.read_bytes() != b"old"


def test_a_stream_that_finds_its_name_taken_at_the_first_chunk_leaves_it(tmp_path):
    (tmp_path / "out.mp4").write_bytes(b"another run's")
    stream = Mp4Stream(8, None, path=tmp_path / "out.mp4", replace=False)
    with pytest.raises(FileExistsError):
        stream.write(FRAMES)
    (tmp_path / "frames").mkdir()
    (tmp_path / "frames" / "frame_00000.png").write_bytes(b"another run's")
    with pytest.raises(FileExistsError):
        PngStream(tmp_path / "frames", replace=False).write(FRAMES)
    assert (tmp_path / "out.mp4").read_bytes() == (tmp_path / "frames" / "frame_00000.png").read_bytes()
    assert sorted(os.listdir(tmp_path)) == ["frames", "out.mp4"]


@pytest.fixture
def another_run_finishes_first(monkeypatch):
    """While this run writes `name`, another run puts its own file there."""

    def arrange(name: str):
        open_writer = VideoWriter.open

        def opened(path, *args, **kwargs):
            writer = open_writer(path, *args, **kwargs)
            if path.name == name:
                path.write_bytes(b"another run's video")
            return writer

        monkeypatch.setattr(writers.VideoWriter, "open", opened)

    return arrange


def test_t2v_that_finishes_second_fails_with_already_exists(invoke_cli, workdir, another_run_finishes_first):
    another_run_finishes_first("same.mp4")
    run = invoke_cli(*T2V, "-o", "same.mp4")
    assert run.exit_code == 1, (run.stderr, run.exception)
    assert run.stderr_lines == [
        "error: 'same.mp4' already exists: another run wrote it while this one generated; it was left as it "
        "is (pass --overwrite to replace it, or choose another name with -o)"
    ]
    assert (workdir / "same.mp4").read_bytes() == b"another run's video"
    assert os.listdir(workdir) == ["same.mp4"]  # no sidecar, no partial


def test_a_file_written_into_a_running_batchs_folder_is_kept(invoke_cli, workdir, another_run_finishes_first):
    (workdir / "jobs.jsonl").write_text(json.dumps({"prompt": "a cat", "name": "j1"}) + "\n")
    another_run_finishes_first("j1.mp4")
    run = invoke_cli("batch", "jobs.jsonl", "-o", "out", *T2V[2:])
    assert run.exit_code == 1, (run.stderr, run.exception)
    assert (workdir / "out" / "j1.mp4").read_bytes() == b"another run's video"
    record = json.loads((workdir / "out" / "manifest.jsonl").read_text().splitlines()[-1])
    assert record["status"] == "failed" and "already exists" in record["error"]


def test_three_parallel_runs_with_the_same_output_make_one_video_and_two_errors(tmp_path):
    registry.ensure_tiny("cogvideox", "t2v")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    command = [sys.executable, "-m", "vidgen", *T2V, "-o", "same.mp4"]
    runs = [
        subprocess.Popen(command, cwd=tmp_path, env=env, stderr=subprocess.PIPE, text=True) for _ in range(3)
    ]
    errors = [run.communicate(timeout=300)[1] for run in runs]
    assert [run.returncode for run in runs].count(0) == 1, errors
    failed = [error for run, error in zip(runs, errors, strict=True) if run.returncode]
    assert len(failed) == 2 and all("'same.mp4' already exists" in error for error in failed), errors
    assert sorted(os.listdir(tmp_path)) == ["same.mp4", "same.mp4.json"]
