"""What both MP4 writers share about running ffmpeg: the metadata input, and a failed run's reason.

The comment (vidgen's JSON summary, which holds the prompt) goes to ffmpeg in an ffmetadata file, not
as a `-metadata` argument: one command-line argument is limited to 128 KiB on Linux, and a long prompt
would otherwise fail only after the whole video was generated.
"""

import os
import re
import signal
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager


def executable() -> str:
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


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
