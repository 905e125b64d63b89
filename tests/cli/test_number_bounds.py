"""Numbers no model can take are refused before loading, in constant time, by every command (issue 15,
item 4): NaN and infinities, and frame counts, durations and sizes past the ceilings in validate/limits.
"""

import json
import signal
from contextlib import contextmanager

import pytest

from vidgen.families import registry
from vidgen.validate.limits import MAX_FRAMES, MAX_GUIDANCE, MAX_SIDE

TINY = ("--model", "tiny-cogvideox", "--seed", "1", "--steps", "1", "--frames", "1")
SMALL = ("--height", "32", "--width", "32")


@contextmanager
def within(seconds: float):
    """Fail (not hang) when the block takes longer: the checks must be constant time."""

    def too_slow(*_):
        raise TimeoutError(f"took over {seconds} s")

    previous = signal.signal(signal.SIGALRM, too_slow)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def assert_refused(run, *words):
    assert run.exit_code == 2, (run.stdout, run.stderr, run.exception)
    assert len(run.stderr_lines) == 1 and run.stderr_lines[0].startswith("error: "), run.stderr
    for word in words:
        assert word in run.stderr, run.stderr


@pytest.mark.parametrize(
    "args, words",
    [
        (("--guidance", "inf", *SMALL), ["--guidance inf is not a finite number"]),
        (("--guidance", "1e308", *SMALL), ["--guidance 1e+308 is too large", f"at most {MAX_GUIDANCE:g}"]),
        (("--height", str(MAX_SIDE + 16), "--width", "32"), [f"--height {MAX_SIDE + 16} is too large"]),
        (("--height", "32", "--width", "1000000"), ["--width 1000000 is too large", str(MAX_SIDE)]),
    ],
)
def test_t2v_refuses_non_finite_and_absurd_numbers_before_loading(vidgen, workdir, files_in, args, words):
    with within(30):
        run = vidgen("t2v", "a cat", *TINY, *args)
    assert_refused(run, *words)
    assert files_in(workdir) == set()


def test_a_frame_count_in_the_billions_is_refused_at_once_not_searched(vidgen, workdir, files_in):
    with within(30):
        run = vidgen("t2v", "a cat", *TINY[:-2], *SMALL, "--frames", "10000000002")
    assert_refused(run, "--frames 10000000002 is too large", f"at most {MAX_FRAMES}")
    assert files_in(workdir) == set()


def test_the_nearest_valid_frame_count_is_found_in_constant_time():
    from vidgen.core.errors import VidgenError
    from vidgen.families.cogvideox.info import read_cogvideox_info
    from vidgen.families.cogvideox.rules import check_frames
    from vidgen.weights.presets import load_presets
    from vidgen.weights.sources import fetch_configs, parse_model

    info = read_cogvideox_info(fetch_configs(parse_model("tiny-cogvideox", load_presets()), registry.WEIGHTS))
    with within(5), pytest.raises(VidgenError) as error:
        check_frames(10**15 + 2, info, "t2v", "tiny-cogvideox")
    assert "use --frames 1000000000000001 or 1000000000000009" in str(error.value)


@pytest.mark.parametrize(
    "args, words",
    [
        (("--seconds", "1e300"), ["--seconds 1e+300 is too large"]),
        (("--seconds", "inf"), ["--seconds inf is not a positive duration"]),
        (("--seconds", "nan"), ["--seconds nan is not a positive duration"]),
        (("--seconds", "500000"), [f"is more than vidgen makes ({MAX_FRAMES:,})"]),
        (("--guidance", "inf"), ["--guidance inf is not a finite number"]),
        (("--frames", "10000000002"), ["--frames 10000000002 is too large"]),
    ],
)
def test_stream_refuses_non_finite_and_absurd_numbers(vidgen, workdir, files_in, args, words):
    with within(30):
        run = vidgen("stream", "a cat", "--model", "tiny-helios", "-o", "out.mp4", *args)
    assert_refused(run, *words)
    assert files_in(workdir) == set()


def test_batch_refuses_a_non_finite_command_line_default_once(vidgen, workdir):
    (workdir / "jobs.jsonl").write_text(json.dumps({"prompt": "a cat"}) + "\n")
    run = vidgen("batch", "jobs.jsonl", "-o", "out", *TINY, *SMALL, "--guidance", "inf")
    assert_refused(run, "--guidance inf is not a finite number")
    assert not (workdir / "out").exists()


@pytest.mark.parametrize(
    "job, words",
    [
        ({"frames": 10000000002}, "frames 10000000002 is too large"),
        ({"height": 1000000}, "height 1000000 is too large"),
        ({"guidance": 1e308}, "guidance 1e+308 is too large"),
    ],
)
def test_a_batch_job_with_an_absurd_number_fails_alone(vidgen, workdir, job, words):
    lines = [{"prompt": "a cat", **job}, {"prompt": "a dog"}]
    (workdir / "jobs.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    with within(60):
        run = vidgen("batch", "jobs.jsonl", "-o", "out", *TINY, *SMALL, "--json")
    assert run.exit_code == 1, run.stderr
    assert f"jobs.jsonl:1: {words}" in run.stderr and "Traceback" not in run.stderr
    assert json.loads(run.stdout)["ok"] == 1
