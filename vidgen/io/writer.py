"""Write frames to MP4, GIF or a folder of PNGs, atomically, and the JSON sidecar beside them.

Frames go to a hidden temporary name in the output's own folder and are renamed to the requested name
only when the output is complete and checked (the encoder succeeded, and the file holds every frame):
an error, a signal or a full disk never leaves a half-written video under the output's name, and a
rename within one folder is atomic. A partial that a killed run left behind is removed the next time
the same output is written (see `vidgen.io.partials`). Frames arrive in any number of `write` calls, so
a streaming generator can hand over one chunk at a time.
"""

import errno
import json
import os
import re
import shutil
import subprocess
import tempfile
from contextlib import ExitStack, suppress
from pathlib import Path
from typing import Any

import numpy as np

from vidgen.core.choices import FORMATS
from vidgen.io import ffmpeg
from vidgen.io.partials import Hold, partial_name, remove_stale
from vidgen.io.probe import frame_count
from vidgen.ui.signals import stop_signals_deferred

# What a PNG-frame folder that vidgen wrote holds: its frames, and a frame being written by `stream`.
OWN_FRAME_ENTRY = re.compile(r"frame_\d{5,}\.png|\.frame_\d{5,}\.png\.partial")


def format_from_path(path: Path) -> str | None:
    """ "mp4" / "gif" from the extension; None when the extension names no format we write."""
    suffix = path.suffix.lower().lstrip(".")
    return suffix if suffix in ("mp4", "gif") else None


def sidecar_path(output: Path) -> Path:
    """`cat.mp4` -> `cat.mp4.json`, `frames/` -> `frames.json`: beside the output, never inside it."""
    return output.with_name(output.name + ".json")


def foreign_entries(folder: Path) -> list[str]:
    """What a folder holds besides PNG frames that vidgen wrote: replacing it would delete those."""
    return sorted(entry.name for entry in folder.iterdir() if not OWN_FRAME_ENTRY.fullmatch(entry.name))


def remove_stale_partials(output: Path) -> None:
    """Clear what killed runs left beside `output` and its sidecar (hidden partial files, old folders)."""
    remove_stale(output, sidecar_path(output))


class VideoWriter:
    """Frames in, one finished output out; nothing exists under the final name until `close`.

    Use as a context manager: leaving the block normally commits, an exception (KeyboardInterrupt
    included) discards the partial output.
    """

    def __init__(self, sink: "_Sink", path: Path, replace: bool = True) -> None:
        self._sink = sink
        self.path = path
        self.replace = replace
        self.frames_written = 0

    @classmethod
    def open(
        cls, path: str | Path, fps: int, format: str, comment: str | None = None, replace: bool = True
    ) -> "VideoWriter":
        """Start an output; `comment` is stored in the MP4's metadata (other formats use the sidecar).
        Without `replace`, `close` raises FileExistsError if something is under the name by then
        (another run's output), and leaves it as it is."""
        path = Path(path)
        sinks = {"mp4": _Mp4Sink, "gif": _GifSink, "png": _PngSink}
        if format not in sinks:
            raise ValueError(f"unknown format {format!r}; expected one of {FORMATS}")
        remove_stale_partials(path)
        return cls(sinks[format](path, fps, comment), path, replace)

    def write(self, frames: np.ndarray) -> None:
        """Append uint8 frames, [F, H, W, 3] or one [H, W, 3]."""
        frames = _check_frames(frames[None] if frames.ndim == 3 else frames)
        self._sink.write(frames)
        self.frames_written += len(frames)

    def close(self) -> None:
        """Finish the output, check it holds every frame, and rename it into place (replacing an
        existing one); raises OSError when the encoder or the disk failed."""
        if self.frames_written == 0:
            self.abort()
            raise ValueError("no frames were written")
        try:
            self._sink.finish()
            found = frame_count(self._sink.partial)
            if not found or (found != self.frames_written and self._sink.exact_count):
                raise OSError(f"the finished file holds {found or 0} of {self.frames_written} frames")
            if self.replace:
                _replace(self._sink.partial, self.path)
            else:
                publish(self._sink.partial, self.path)
        except BaseException:
            self.abort()
            raise
        self._sink.release()

    def abort(self) -> None:
        """Discard the partial output; the requested name is left as it was."""
        self._sink.discard()
        self._sink.release()

    def __enter__(self) -> "VideoWriter":
        return self

    def __exit__(self, exc_type, exc, traceback) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def write_sidecar(output: Path, summary: dict[str, Any]) -> Path:
    """Write `summary` as JSON beside `output` (atomically, like the output itself); returns its path."""
    path = sidecar_path(output)
    partial = partial_name(path)
    try:
        with open(partial, "x", encoding="utf-8") as file:
            json.dump(summary, file, indent=2, ensure_ascii=False)
            file.write("\n")
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return path


def _check_frames(frames: np.ndarray) -> np.ndarray:
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"expected uint8 frames [F, H, W, 3], got {frames.dtype} {tuple(frames.shape)}")
    return frames


def publish(partial: Path, final: Path) -> None:
    """Give `partial` the name `final` unless something has it: two runs writing the same name both
    checked it was free before generating, and the one that finishes second must not replace the first's
    output. One step that fails when the name is taken (a hard link, or renaming a folder, which never
    replaces a folder that holds anything): FileExistsError, and `partial` is left to its owner."""
    try:
        if partial.is_dir():
            partial.rename(final)
        else:
            os.link(partial, final)
            partial.unlink()
    except OSError as error:
        if error.errno in (errno.EEXIST, errno.ENOTEMPTY, errno.ENOTDIR, errno.EISDIR):
            raise FileExistsError(
                errno.EEXIST, "another run wrote it meanwhile; it was left as it is", str(final)
            ) from None
        if error.errno not in (errno.EPERM, errno.EOPNOTSUPP) or final.exists():
            raise
        os.replace(partial, final)  # a file system without hard links (FAT): checked just before


def _replace(partial: Path, final: Path) -> None:
    """Rename `partial` to `final`; an existing folder of frames is moved aside first and removed after.
    A folder holding anything else is not ours to delete (checked before generating too)."""
    if not final.is_dir():
        os.replace(partial, final)
        return
    foreign = foreign_entries(final)
    if foreign:
        raise OSError(f"'{final}' holds files vidgen did not write ({foreign[0]}); it was not replaced")
    old = partial_name(final, tag="old")
    final.rename(old)
    partial.rename(final)
    shutil.rmtree(old, ignore_errors=True)


class _Sink:
    """One output format: frames go to `self.partial`, held for as long as this process writes it."""

    partial: Path
    _hold: Hold
    exact_count = True  # the finished output holds exactly the frames written

    def write(self, frames: np.ndarray) -> None:
        raise NotImplementedError

    def finish(self) -> None:
        raise NotImplementedError

    def discard(self) -> None:
        self.partial.unlink(missing_ok=True)

    def release(self) -> None:
        self._hold.release()


def _partial_file(path: Path) -> tuple[Path, Hold]:
    """Create an empty partial file, held. Not mkstemp: its mode 0600 would survive into the output,
    where `open` gives the usual umask-based permissions."""
    partial = partial_name(path)
    partial.touch(exist_ok=False)
    return partial, Hold(partial)


class _Mp4Sink(_Sink):
    """H.264 in yuv420p, the widest-playing MP4 there is, from an ffmpeg reading raw frames on stdin.

    ffmpeg's exit status and the finished file are both checked: an encoder stopped by a full disk or
    a file-size limit must not leave a truncated video that looks written."""

    def __init__(self, path: Path, fps: int, comment: str | None) -> None:
        self.partial, self._hold = _partial_file(path)
        self.fps = fps
        self.comment = comment
        self._stack = ExitStack()  # the metadata file, while ffmpeg runs
        self._process: subprocess.Popen | None = None  # started on the first frames, when the size is known
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 - closed in _end; a file, so ffmpeg never blocks on it

    def write(self, frames: np.ndarray) -> None:
        if self._process is None:
            with stop_signals_deferred():  # a Ctrl-C while ffmpeg starts finds it held, so `discard` stops it
                self._process = self._start(width=frames.shape[2], height=frames.shape[1])
        try:
            for frame in frames:  # one frame at a time: no second copy of a whole video in memory
                self._process.stdin.write(np.ascontiguousarray(frame))
        except BrokenPipeError:  # ffmpeg stopped: its own reason is the one to report
            raise OSError(f"the encoder failed: {self._wait_failure()}") from None

    def _start(self, width: int, height: int) -> subprocess.Popen:
        if width % 2 or height % 2:
            raise ValueError(f"H.264 in yuv420p needs even sizes, got {width}x{height}")
        metadata = self._stack.enter_context(ffmpeg.metadata_input(self.comment))
        command = [
            ffmpeg.executable(),
            *("-y", "-v", "error", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{width}x{height}"),
            *("-r", str(self.fps), "-i", "-", *metadata),
            *ffmpeg.metadata_mapping(self.comment),
            *("-c:v", "libx264", "-pix_fmt", "yuv420p", "-crf", "18", "-movflags", "+faststart"),
            *("-f", "mp4", str(self.partial)),  # the container named, whatever the file's extension
        ]
        return ffmpeg.start(command, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=self._stderr)

    def finish(self) -> None:
        failure = self._wait_failure()
        if failure:
            raise OSError(f"the encoder failed: {failure}")

    def _wait_failure(self) -> str:
        """Let ffmpeg finish (end of input), then why it failed; "" when it succeeded."""
        with suppress(BrokenPipeError):
            self._process.stdin.close()
        code = self._process.wait()
        self._stack.close()
        self._stderr.seek(0)
        failure = "" if code == 0 else ffmpeg.failure(code, self._stderr.read())
        self._stderr.close()
        return failure

    def discard(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait()
        if self._process is not None:
            with suppress(OSError):
                self._process.stdin.close()
        self._stack.close()
        self._stderr.close()
        super().discard()


class _GifSink(_Sink):
    """An endlessly looping GIF. Pillow writes a GIF in one call, so frames are kept until `finish`."""

    exact_count = False  # Pillow merges identical neighbouring frames into one that shows longer

    def __init__(self, path: Path, fps: int, comment: str | None) -> None:
        self.partial, self._hold = _partial_file(path)
        self.fps = fps
        self._frames: list[np.ndarray] = []

    def write(self, frames: np.ndarray) -> None:
        self._frames.extend(frames)

    def finish(self) -> None:
        import imageio.v3 as iio

        iio.imwrite(self.partial, np.stack(self._frames), extension=".gif", duration=1000 / self.fps, loop=0)


class _PngSink(_Sink):
    """A folder of lossless frames, frame_00000.png, frame_00001.png, ..."""

    def __init__(self, path: Path, fps: int, comment: str | None) -> None:
        self.partial = partial_name(path)
        self.partial.mkdir()  # not mkdtemp, whose mode 0700 would stay on the output folder
        self._hold = Hold(self.partial)
        self._count = 0

    def write(self, frames: np.ndarray) -> None:
        from PIL import Image

        for frame in frames:
            Image.fromarray(frame).save(self.partial / f"frame_{self._count:05d}.png")
            self._count += 1

    def finish(self) -> None:
        pass

    def discard(self) -> None:
        shutil.rmtree(self.partial, ignore_errors=True)
