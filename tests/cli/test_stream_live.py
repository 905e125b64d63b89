"""`vidgen stream --live` as a user runs it: prompt lines piped in while the video generates, at moments
chosen from what the stream reports on stderr (a chunk written, a prompt taken), never from sleeps.

The confirmation of a prompt comes when the chunk it conditions starts, right after the line of the
chunk before it: so the chunk each prompt took effect at is known from stderr alone, and the test checks
that the recorded schedule says the same, and that replaying the sidecar's command gives the same frames.
"""

import json
import os
import queue
import re
import shlex
import signal
import subprocess
import sys
import threading
import time

import imageio.v3 as iio
import numpy as np
import pytest

CHUNK = 33
STREAM = [sys.executable, "-m", "vidgen", "stream", "--live", "--model", "tiny-helios", "--seed", "1"]
FAST = ["--steps", "1", "--guidance", "1"]
TAKEN = re.compile(r"live: chunk (\d+)/\d+ on follows '(.*)'$")


@pytest.fixture
def env(tmp_path):
    return {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}


class LiveStream:
    """`vidgen stream --live` in its own process: type lines into it, wait for lines on its stderr."""

    def __init__(
        self, args: list[str], cwd, env, command: list[str] | None = None, stdin=subprocess.PIPE
    ) -> None:
        self.process = subprocess.Popen(
            command or [*STREAM, *FAST, *args],
            cwd=cwd,
            env=env,
            stdin=stdin,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.stderr: list[str] = []
        threading.Thread(target=self._read_stderr, daemon=True).start()

    def __enter__(self) -> "LiveStream":
        return self

    def __exit__(self, *exc_info) -> None:
        self.process.kill()
        self.process.__exit__(*exc_info)  # waits, and closes the pipes

    def _read_stderr(self) -> None:
        for line in self.process.stderr:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def type(self, line: str) -> None:
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()

    def wait_for(self, pattern: str, seconds: float = 120) -> re.Match:
        """The next stderr line matching `pattern` (every line is kept in self.stderr)."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=1)
            except queue.Empty:
                continue
            if line is None:
                break
            self.stderr.append(line)
            if found := re.search(pattern, line):
                return found
        raise AssertionError(f"no line matching {pattern!r}; stderr so far:\n" + "\n".join(self.stderr))

    def chunks_written(self) -> int:
        return sum(bool(re.match(r"chunk \d+/\d+: ", line)) for line in self.stderr)

    def finish(self, seconds: float = 120) -> int:
        """Wait for the end (stdin left as it is); returns the exit code, with all of stderr read."""
        self.process.wait(timeout=seconds)
        while (line := self.lines.get(timeout=10)) is not None:
            self.stderr.append(line)
        return self.process.returncode


def replay(vidgen, sidecar: dict, output: str) -> np.ndarray:
    """Run the sidecar's command (as a user would paste it, in-process) into `output`; its frames."""
    words = shlex.split(sidecar["command"])
    assert words[:2] == ["vidgen", "stream"] and "--live" not in words
    words[words.index("-o") + 1] = output
    run = vidgen(*words[1:], "--quiet")
    assert run.exit_code == 0, run.stderr
    return iio.imread(output)


def test_typed_prompts_take_effect_at_the_next_chunk_and_the_sidecar_replays_them(vidgen, workdir, env):
    with LiveStream(
        ["a cat walks", "--frames", str(CHUNK * 8), "--interpolate-chunks", "1", "-o", "live.mp4"],
        workdir,
        env,
    ) as live:
        live.wait_for(r"^chunk 1/8: ")  # the first chunk is written
        live.type("a robot dances")
        first = live.wait_for(TAKEN.pattern)
        first_chunk = live.chunks_written() + 1  # the chunk that started right after the last one written
        live.wait_for(rf"^chunk {first_chunk}/8: .*'a cat walks' 50% \+ 'a robot dances' 50%$")
        live.type("")  # ignored
        live.type('a red car, "fast"')  # during a later chunk
        second = live.wait_for(TAKEN.pattern)
        second_chunk = live.chunks_written() + 1
        assert live.finish() == 0, "\n".join(live.stderr)  # stdin still open: it runs to --frames
        ended = live.process.stdout.read()
    assert (int(first[1]), first[2]) == (first_chunk, "a robot dances") and first_chunk >= 2
    assert (int(second[1]), second[2]) == (second_chunk, 'a red car, "fast"') and second_chunk > first_chunk
    assert ended.startswith("wrote live.mp4 (261 frames in 8 chunks")
    schedule = [
        (0, "a cat walks"),
        (first_chunk - 1, "a robot dances"),
        (second_chunk - 1, 'a red car, "fast"'),
    ]
    sidecar = json.loads((workdir / "live.mp4.json").read_text())
    assert sidecar["stream"]["status"] == "done" and sidecar["stream"]["live"] is True
    assert [(p["chunk"], p["prompt"]) for p in sidecar["stream"]["prompts"]] == schedule
    first_row, second_row = f"{schedule[1][0]},a robot dances", f'{schedule[2][0]},"a red car, ""fast"""'
    csv = f"chunk,prompt\n0,a cat walks\n{first_row}\n{second_row}\n"
    assert (workdir / "live.mp4.prompts.csv").read_text() == csv
    assert "--prompt-file live.mp4.prompts.csv --interpolate-chunks 1" in sidecar["command"]
    frames = iio.imread(workdir / "live.mp4")
    assert frames.shape[0] == 261 and np.array_equal(replay(vidgen, sidecar, "replay.mp4"), frames)
    one_prompt = vidgen("stream", *STREAM[5:], *FAST, "a cat walks", "--frames", "264", "-o", "one.mp4")
    assert one_prompt.exit_code == 0, one_prompt.stderr
    one = iio.imread(workdir / "one.mp4")  # the typed prompts changed the chunks from the first switch on
    start = (first_chunk - 1) * CHUNK
    assert np.array_equal(one[:start], frames[:start]) and not np.array_equal(one[start:], frames[start:])


def test_quit_ends_after_the_chunk_being_made_with_a_playable_file_that_replays(vidgen, workdir, env):
    with LiveStream(["a cat walks", "--frames", str(CHUNK * 300), "-o", "live.mp4"], workdir, env) as live:
        live.wait_for(r"^chunk 2/300: ")
        live.type("a prompt far too long " * 200)  # over the text encoder's 512 tokens
        live.wait_for(r"^warning: the prompt is \d+ tokens; the model reads the first 512")
        live.type("/quit")
        code, ended = live.finish(), live.process.stdout.read()
    assert code == 0 and not any("Traceback" in line for line in live.stderr), "\n".join(live.stderr)
    chunks = live.chunks_written()
    frames = iio.imread(workdir / "live.mp4")
    assert 3 <= chunks < 300 and len(frames) == chunks * CHUNK  # whole chunks, each one written
    assert ended.startswith(f"wrote live.mp4 ({chunks * CHUNK} frames in {chunks} chunks")
    sidecar = json.loads((workdir / "live.mp4.json").read_text())
    assert sidecar["stream"]["status"] == "ended" and sidecar["stream"]["chunks"] == chunks
    assert f"--frames={chunks * CHUNK}" in sidecar["command"]
    replayed = replay(vidgen, sidecar, "replay.mp4")  # diffusers cuts a video to 4k+1 frames
    assert len(frames) - 3 <= len(replayed) <= len(frames) and np.array_equal(
        replayed, frames[: len(replayed)]
    )


def test_ctrl_c_keeps_every_finished_chunk_and_the_prompts_so_far(tmp_path, env):
    with LiveStream(["a cat walks", "--frames", str(CHUNK * 300), "-o", "live.mp4"], tmp_path, env) as live:
        live.wait_for(r"^chunk 1/300: ")
        live.type("a robot dances")
        taken = live.wait_for(TAKEN.pattern)
        live.process.send_signal(signal.SIGINT)
        code = live.finish()
    assert code == 130, "\n".join(live.stderr)
    chunks = live.chunks_written()
    assert live.stderr[-1].startswith(f"error: interrupted; live.mp4 holds {chunks} finished chunk")
    assert len(iio.imread(tmp_path / "live.mp4")) == chunks * CHUNK
    sidecar = json.loads((tmp_path / "live.mp4.json").read_text())
    assert sidecar["stream"]["status"] == "interrupted" and sidecar["stream"]["chunks"] == chunks
    expected = "chunk,prompt\n0,a cat walks\n" + f"{int(taken[1]) - 1},a robot dances\n"
    assert (tmp_path / "live.mp4.prompts.csv").read_text() == expected


def test_live_video_goes_to_stdout_and_closing_stdin_ends_it_cleanly(tmp_path, env):
    with LiveStream(["a cat walks", "--frames", str(CHUNK * 300), "-o", "-"], tmp_path, env) as live:
        video = []
        reader = threading.Thread(target=lambda: video.append(live.process.stdout.buffer.read()), daemon=True)
        reader.start()
        live.wait_for(r"^chunk 1/300: ")
        live.type("a robot dances")
        live.wait_for(TAKEN.pattern)
        live.process.stdin.close()  # the end of input: as /quit
        code = live.finish()
        reader.join(timeout=30)
    assert code == 0, "\n".join(live.stderr)
    (tmp_path / "piped.mp4").write_bytes(video[0])
    assert len(iio.imread(tmp_path / "piped.mp4")) == live.chunks_written() * CHUNK
    assert not (tmp_path / "-.prompts.csv").exists()


@pytest.mark.parametrize("args", [["-"], ["--prompt", "-"], ["--prompt-file", "-"]])
def test_live_with_the_prompt_from_stdin_is_a_one_line_error(vidgen, workdir, args):
    run = vidgen("stream", "--live", "--model", "tiny-helios", *args, "-o", "out.mp4", input="a cat\n")
    assert run.exit_code == 2 and run.stderr.startswith("error: --live reads new prompts from stdin")
    assert len(run.stderr.strip().splitlines()) == 1 and list(workdir.iterdir()) == []
