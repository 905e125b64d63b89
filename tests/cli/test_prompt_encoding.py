"""A prompt that is not UTF-8 text (bytes in argv, a pipe, or a lone surrogate) is one line and exit 2
before any model loads, not a tokenizer's traceback after it has."""

import os
import subprocess
import sys

import pytest

# Python decodes argv with surrogateescape: the byte 0xff arrives as U+DCFF.
NOT_UTF8 = "a \udcff cat"
T2V = ("t2v", "--model", "tiny-cogvideox")


@pytest.mark.parametrize(
    ("command", "words"),
    [
        ((*T2V, NOT_UTF8), "the prompt is not valid UTF-8 text (byte 0xff at character 3)"),
        ((*T2V, "--prompt", NOT_UTF8), "the prompt is not valid UTF-8 text (byte 0xff at character 3)"),
        ((*T2V, "a cat", "-n", "no \ud800"), "--negative-prompt is not valid UTF-8 text (a lone surrogate"),
        (("stream", "--model", "tiny-helios", NOT_UTF8), "the prompt is not valid UTF-8 text (byte 0xff"),
    ],
)
def test_a_prompt_that_is_not_utf8_is_one_line_and_exit_2_before_loading(
    vidgen, workdir, stand_in_pipeline, command, words
):
    run = vidgen(*command, "-o", "out.mp4")
    assert run.exit_code == 2, (run.stderr, run.exception)
    assert len(run.stderr_lines) == 1 and words in run.stderr, run.stderr
    assert stand_in_pipeline.calls == [] and not (workdir / "out.mp4").exists()


def test_a_prompt_piped_in_that_is_not_utf8_is_one_line_and_exit_2(vidgen, workdir, stand_in_pipeline):
    run = vidgen("t2v", "--model", "tiny-cogvideox", "-", "-o", "out.mp4", input=b"a \xff cat\n")
    assert run.exit_code == 2, (run.stderr, run.exception)
    assert run.stderr_lines == [
        "error: the prompt on stdin is not valid UTF-8 text (byte 0xff) (pipe in UTF-8 text)"
    ]
    assert stand_in_pipeline.calls == []


def test_bytes_in_argv_are_one_line_in_a_real_process(workdir):
    command = [
        sys.executable,
        "-m",
        "vidgen",
        "t2v",
        "--model",
        "tiny-cogvideox",
        b"a \xff cat",
        "-o",
        "out.mp4",
    ]
    done = subprocess.run(command, capture_output=True, timeout=300, env={**os.environ, "LC_ALL": "C.UTF-8"})
    stderr = done.stderr.decode(errors="replace")
    assert done.returncode == 2, stderr
    assert stderr.strip().splitlines()[-1].endswith("(byte 0xff at character 3) (pass UTF-8 text)"), stderr
    assert "Traceback" not in stderr
