"""Output names the file system or the JSON files cannot take are one line and exit 2, before loading:
a name over 255 bytes (ENAMETOOLONG from the first look at the disk), bytes that are not UTF-8 (from
a shell on a non-UTF-8 file name), a sidecar name that is a folder (which --overwrite must not
replace, found only after generating)."""

import pytest

from vidgen.app import run as running

LONG = "a" * 260 + ".mp4"
NOT_UTF8 = b"\xff\xfe.mp4".decode("utf-8", "surrogateescape")  # how Python hands such an argument over
T2V = ("t2v", "a cat", "--model", "tiny-cogvideox", "--steps", "1", "--seed", "1")
STREAM = ("stream", "a cat", "--model", "tiny-helios-distilled", "--steps", "1", "--seed", "1")
BATCH = ("batch", "jobs.jsonl", "--model", "tiny-cogvideox", "--steps", "1")


@pytest.fixture(autouse=True)
def nothing_loads(monkeypatch, workdir):
    def refuse(*args, **kwargs):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(running, "fetch", refuse)
    (workdir / "jobs.jsonl").write_text('{"prompt": "a cat"}\n')


def assert_one_line(run, *words):
    assert run.exit_code == 2, (run.stderr, run.exception)
    assert len(run.stderr_lines) == 1 and run.stderr_lines[0].startswith("error: "), run.stderr
    assert all(word in run.stderr for word in words), run.stderr


@pytest.mark.parametrize("command", [T2V, STREAM, BATCH], ids=["t2v", "stream", "batch"])
def test_an_output_name_over_255_bytes_is_one_line_before_loading(invoke_cli, workdir, command):
    run = invoke_cli(*command, "-o", LONG)
    assert_one_line(run, "264 bytes", "at most", "choose a shorter -o")
    assert list(workdir.iterdir()) == [workdir / "jobs.jsonl"]


@pytest.mark.parametrize("command", [T2V, STREAM], ids=["t2v", "stream"])
def test_a_folder_name_over_255_bytes_is_one_line_before_loading(invoke_cli, command):
    assert_one_line(invoke_cli(*command, "-o", f"{'b' * 256}/x.mp4"), "256 bytes", "at most 255")


@pytest.mark.parametrize("command", [T2V, STREAM, BATCH], ids=["t2v", "stream", "batch"])
def test_an_output_name_that_is_not_utf8_is_one_line_before_loading(invoke_cli, workdir, command):
    run = invoke_cli(*command, "-o", NOT_UTF8)
    assert_one_line(run, "'\\xff\\xfe.mp4' is not valid UTF-8")
    assert list(workdir.iterdir()) == [workdir / "jobs.jsonl"]


@pytest.mark.parametrize("command", [T2V, STREAM], ids=["t2v", "stream"])
def test_overwrite_with_a_folder_where_the_sidecar_goes_is_one_line_before_loading(
    invoke_cli, workdir, command
):
    (workdir / "x.mp4.json").mkdir()
    run = invoke_cli(*command, "-o", "x.mp4", "--overwrite")
    assert_one_line(run, "'x.mp4.json' is a folder", "choose another -o")
    assert not (workdir / "x.mp4").exists()
