"""A stream that ended early (/quit, the end of input, a signal) holds whole 33-frame chunks; its
sidecar's command replays exactly those frames, not the 4k+1 frames a planned video is cut to."""

import json
import shlex
import signal
import subprocess

import imageio.v3 as iio
import numpy as np
import pytest
from test_stream_live import CHUNK, FAST, STREAM, LiveStream, env  # noqa: F401 (env: a fixture)


def replayed(vidgen, sidecar: dict, output: str) -> np.ndarray:
    words = shlex.split(sidecar["command"])
    words[words.index("-o") + 1] = output
    run = vidgen(*words[1:], "--quiet")
    assert run.exit_code == 0, run.stderr
    return iio.imread(output)


def test_a_live_stream_ended_by_quit_replays_every_frame_it_wrote(vidgen, workdir, env):  # noqa: F811
    with LiveStream(["a cat walks", "--frames", str(CHUNK * 300), "-o", "live.mp4"], workdir, env) as live:
        live.wait_for(r"^chunk 1/300: ")
        live.type("a robot dances")
        live.wait_for(r"^live: chunk \d+/300 on follows")
        live.type("/quit")
        assert live.finish() == 0, "\n".join(live.stderr)
    frames = iio.imread(workdir / "live.mp4")
    chunks = live.chunks_written()
    assert chunks >= 2 and len(frames) == chunks * CHUNK
    sidecar = json.loads((workdir / "live.mp4.json").read_text())
    assert sidecar["stream"]["status"] == "ended"
    again = replayed(vidgen, sidecar, "replay.mp4")
    assert again.shape == frames.shape and np.array_equal(again, frames)
    assert f"--frames={chunks * CHUNK} --whole-chunks" in sidecar["command"]


@pytest.mark.parametrize("live", [True, False], ids=["live", "planned"])
def test_a_stream_stopped_by_a_signal_replays_the_chunks_it_wrote(vidgen, workdir, env, live):  # noqa: F811
    args = ["a cat walks", "--frames", str(CHUNK * 300), "-o", "out.mp4"]
    with (LiveStream if live else PlannedStream)(args, workdir, env) as stream:
        stream.wait_for(r"^chunk 2/300: ")
        stream.process.send_signal(signal.SIGINT)
        assert stream.finish() == 130, "\n".join(stream.stderr)
    frames = iio.imread(workdir / "out.mp4")
    sidecar = json.loads((workdir / "out.mp4.json").read_text())
    assert sidecar["stream"]["status"] == "interrupted"
    assert f"--frames={len(frames)} --whole-chunks" in sidecar["command"]  # not the 300 chunks planned
    again = replayed(vidgen, sidecar, "replay.mp4")
    assert again.shape == frames.shape and np.array_equal(again, frames)


class PlannedStream(LiveStream):
    """`vidgen stream` without --live, watched the same way."""

    def __init__(self, args: list[str], cwd, env) -> None:  # noqa: F811
        command = [word for word in [*STREAM, *FAST, *args] if word != "--live"]
        super().__init__(args, cwd, env, command=command, stdin=subprocess.DEVNULL)


def test_whole_chunks_keeps_the_last_chunk_whole(vidgen, workdir):
    base = ["stream", "--model", "tiny-helios", "a cat", "--steps", "1", "--guidance", "1", "--seed", "2"]
    cut, whole = (
        vidgen(*base, "--frames", "66", "-o", "cut.mp4"),
        vidgen(*base, "--frames", "66", "--whole-chunks", "-o", "whole.mp4"),
    )
    assert cut.exit_code == 0 and whole.exit_code == 0, cut.stderr + whole.stderr
    cut, whole = iio.imread("cut.mp4"), iio.imread("whole.mp4")
    assert (len(cut), len(whole)) == (65, 66) and np.array_equal(whole[:65], cut)
