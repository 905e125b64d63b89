"""The encoder dies with vidgen, on a busy machine too.

An ffmpeg that outlived a killed vidgen would see the end of its input and finish the file, possibly
after the next run removed the killed run's partial, bringing it back. Each test runs under CPU load
that it starts itself (busy loops, one per core), so that ffmpeg starts and finishes slowly, as on a
loaded machine, and the orderings that only load brings about are the ones tested.
"""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from test_process_failures import WRITING_SLOWLY

from vidgen.families import registry
from vidgen.io.writer import VideoWriter

T2V = ["t2v", "--model", "tiny-cogvideox", "a cat walks", "--seed", "1", "--steps", "1", "--quiet"]

# The same, with a second process holding ffmpeg's input open (as anything that inherited the pipe
# would): ffmpeg then never sees its input end, and ends only if it is killed with vidgen.
INPUT_HELD_OPEN = WRITING_SLOWLY.replace(
    "    print(",
    "    import subprocess\n"
    "    subprocess.Popen(['sleep', '600'], pass_fds=[self._sink._process.stdin.fileno()])\n"
    "    print(",
)

# A writer whose encoder never ends on its own (it ignores the end of its input, as no ffmpeg does):
# whether it is still there after vidgen is killed says whether it was killed with vidgen.
ENDLESS_ENCODER = """
import sys, time
import numpy as np
from vidgen.io import ffmpeg
from vidgen.io.writer import VideoWriter
ffmpeg.executable = lambda: sys.argv[1]
writer = VideoWriter.open(sys.argv[2], fps=8, format="mp4")
writer.write(np.zeros((1, 16, 16, 3), np.uint8))
print("writing", file=sys.stderr, flush=True)
time.sleep(600)
"""


@pytest.fixture
def busy():
    """Every core kept busy for the test's length by processes that spin."""
    spinners = [
        subprocess.Popen([sys.executable, "-c", "while True: pass"])
        for _ in range(min(os.cpu_count() or 2, 4))
    ]
    yield
    for spinner in spinners:
        spinner.kill()
        spinner.wait()


@pytest.fixture
def env(tmp_path):
    registry.ensure_tiny("cogvideox", "t2v")
    return {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}


def children(pid: int) -> list[int]:
    """The processes whose parent is `pid`."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:  # after "pid (comm) state": the parent
                found.append(int(entry))
    return found


def alive(pid: int) -> bool:
    """Running: not gone, and not a zombie waiting for its new parent to collect it."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def dying(pid: int) -> bool:
    """Gone, a zombie, or with a SIGKILL pending that it cannot outlive."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return True
    fields = dict(line.split(":\t", 1) for line in status.splitlines() if ":\t" in line)
    pending = int(fields["SigPnd"], 16) | int(fields["ShdPnd"], 16)
    return not alive(pid) or bool(pending >> (signal.SIGKILL - 1) & 1)


def gone_within(pids: list[int], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while any(alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not any(alive(pid) for pid in pids)


def started_writing(command: list[str], cwd: Path, env: dict) -> subprocess.Popen:
    process = subprocess.Popen(command, cwd=cwd, env=env, stderr=subprocess.PIPE, text=True)
    assert process.stderr.readline() == "writing\n"
    return process


def partials(folder: Path) -> list[Path]:
    return [path for path in folder.iterdir() if ".partial" in path.name]


@pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="the kernel's parent-death signal is Linux's"
)
def test_an_encoder_that_would_run_on_is_killed_with_vidgen(tmp_path, busy):
    encoder = tmp_path / "encoder"
    encoder.write_text("#!/bin/sh\nexec sleep 600\n")
    encoder.chmod(0o755)
    command = [sys.executable, "-c", ENDLESS_ENCODER, str(encoder), str(tmp_path / "a.mp4")]
    process, encoders = started_writing(command, tmp_path, {**os.environ}), []
    try:
        encoders = children(process.pid)
        assert encoders and all(alive(pid) for pid in encoders)
        process.kill()
        process.wait(timeout=60)
        assert gone_within(encoders, 30), "the encoder outlived the vidgen that started it"
    finally:
        process.kill()
        for pid in filter(alive, encoders):  # never leave a sleeping encoder behind, whatever failed
            os.kill(pid, signal.SIGKILL)


@pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="the kernel's parent-death signal is Linux's"
)
def test_after_sigkill_ffmpeg_dies_with_vidgen_and_never_brings_back_the_removed_partial(tmp_path, env, busy):
    process = started_writing([sys.executable, "-c", INPUT_HELD_OPEN, *T2V, "-o", "a.mp4"], tmp_path, env)
    started = []
    try:
        started = children(process.pid)
        encoders = [pid for pid in started if "rawvideo" in Path(f"/proc/{pid}/cmdline").read_text()]
        assert len(encoders) == 1 and alive(encoders[0])
        process.kill()
        process.wait(timeout=60)
        # The kernel sends the SIGKILL before anyone can see that vidgen is gone.
        assert dying(encoders[0]), "ffmpeg outlived the vidgen that started it"
        assert gone_within(encoders, 60)
    finally:
        process.kill()
        for pid in filter(alive, started):  # the process holding the input open; ffmpeg if it lived on
            os.kill(pid, signal.SIGKILL)
    assert len(partials(tmp_path)) == 1  # SIGKILL cannot be handled: vidgen left its partial
    with VideoWriter.open(tmp_path / "a.mp4", fps=8, format="mp4") as writer:  # removes the partial
        writer.write(np.zeros((2, 16, 16, 3), np.uint8))
    time.sleep(1)  # time for a surviving encoder to write again, had there been one
    assert os.listdir(tmp_path) == ["a.mp4"]


def test_sigterm_while_writing_leaves_nothing_on_a_busy_machine(tmp_path, env, busy):
    process = started_writing([sys.executable, "-c", WRITING_SLOWLY, *T2V, "-o", "a.mp4"], tmp_path, env)
    try:
        encoders = children(process.pid)
        process.send_signal(signal.SIGTERM)
        stderr = process.stderr.read()
        process.wait(timeout=120)
    finally:
        process.kill()
    assert process.returncode == 143, stderr
    assert stderr.strip().splitlines() == ["error: interrupted; no output was written"]
    assert gone_within(encoders, 60)
    time.sleep(1)  # time for a surviving encoder to write again, had there been one
    assert os.listdir(tmp_path) == []
