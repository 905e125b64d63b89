"""What both MP4 writers share about running ffmpeg: the metadata input, and a failed run's reason.

The comment (vidgen's JSON summary, which holds the prompt) goes to ffmpeg in an ffmetadata file, not
as a `-metadata` argument: one command-line argument is limited to 128 KiB on Linux, and a long prompt
would otherwise fail only after the whole video was generated.
"""

import ctypes
import os
import re
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from vidgen.ui.signals import stop_signals_deferred

PR_SET_PDEATHSIG = 1  # linux/prctl.h


def executable() -> str:
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def start(command: list[str], **popen: Any) -> subprocess.Popen:
    """Start an encoder that cannot outlive vidgen, in a session of its own.

    Its own session: Ctrl-C in the terminal goes to vidgen, which decides what becomes of the output,
    and not to ffmpeg, whose own exit would hide why the run stopped. Dying with vidgen: an ffmpeg
    whose parent was killed (SIGKILL, the OOM killer) sees the end of its input and would finish the
    file, possibly after the next run removed the killed run's partial, bringing it back. On Linux the
    kernel kills it with its parent (PR_SET_PDEATHSIG); callers start it from the main thread, whose
    end is the process's. Call it within `stop_signals_deferred`, keeping the process before the block
    ends, so that a Ctrl-C or SIGTERM never comes between starting it and holding it."""
    return subprocess.Popen(command, start_new_session=True, preexec_fn=_dying_with(os.getpid()), **popen)


def run(command: list[str], input: bytes) -> subprocess.CompletedProcess:
    """Run an encoder to its end on `input`, started as `start` does; stdout and stderr captured."""
    process = None
    try:
        with stop_signals_deferred():
            process = start(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        stdout, stderr = process.communicate(input)
    except BaseException:  # Ctrl-C, SIGTERM: the encoder stops with the run
        if process is not None:
            process.kill()
            process.wait()
        raise
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


def _dying_with(parent: int) -> Callable[[], None] | None:
    """A preexec_fn asking the kernel to SIGKILL the child when `parent` ends (Linux; None elsewhere)."""
    if not sys.platform.startswith("linux"):
        return None
    prctl, kill = ctypes.CDLL(None, use_errno=True).prctl, int(signal.SIGKILL)  # the child only calls

    def die_with_parent() -> None:
        prctl(PR_SET_PDEATHSIG, kill)
        if os.getppid() != parent:  # the parent died before the request took effect
            os._exit(1)

    return die_with_parent


@contextmanager
def metadata_input(comment: str | None) -> Iterator[list[str]]:
    """ffmpeg arguments adding input 1, the global metadata holding `comment` (none when None); use
    with `-map 0 -map_metadata 1` (see `METADATA_MAPPING`)."""
    if comment is None:
        yield []
        return
    escaped = re.sub(r"([=;#\\\n])", r"\\\1", comment)
    file = tempfile.NamedTemporaryFile("w", encoding="utf-8", suffix=".ffmeta", delete=False)  # noqa: SIM115
    try:
        with file:
            file.write(f";FFMETADATA1\ncomment={escaped}\n")
        yield ["-f", "ffmetadata", "-i", file.name]
    finally:
        os.unlink(file.name)


def metadata_mapping(comment: str | None) -> list[str]:
    """The output options that take the video from input 0 and the metadata from `metadata_input`."""
    return [] if comment is None else ["-map", "0:v", "-map_metadata", "1"]


def failure(returncode: int, stderr: bytes) -> str:
    """Why an ffmpeg run failed, in a few words: its last error line, or the signal that stopped it."""
    if returncode < 0:
        number = -returncode
        if number == getattr(signal, "SIGXFSZ", None):
            return "the file reached the size limit for this process (ulimit -f)"
        return f"ffmpeg was stopped by {signal.Signals(number).name}"
    lines = stderr.decode(errors="replace").strip().splitlines()
    if not lines:
        return f"ffmpeg exited with status {returncode}"
    return re.sub(r"^(\[[^\]]*\]\s*)+", "", lines[-1])  # without "[out#0/mp4 @ 0x5650e0638700] "
