"""Write frames to MP4, GIF or a folder of PNGs, atomically, and the JSON sidecar beside them.

Frames go to a hidden temporary name in the output's own folder and are renamed to the requested name
only when the output is complete: an error or Ctrl-C never leaves a half-written video behind, and a
rename within one folder is atomic. Frames arrive in any number of `write` calls, so a streaming
generator can hand over one chunk at a time (a fragmented-MP4 sink for live viewing would be one more
`_Sink` subclass).
"""

import json
import os
import secrets
import shutil
from pathlib import Path
from typing import Any

import numpy as np

FORMATS = ("mp4", "gif", "png")


def format_from_path(path: Path) -> str | None:
    """ "mp4" / "gif" from the extension; None when the extension names no format we write."""
    suffix = path.suffix.lower().lstrip(".")
    return suffix if suffix in ("mp4", "gif") else None


def sidecar_path(output: Path) -> Path:
    """`cat.mp4` -> `cat.mp4.json`, `frames/` -> `frames.json`: beside the output, never inside it."""
    return output.with_name(output.name + ".json")


class VideoWriter:
    """Frames in, one finished output out; nothing exists under the final name until `close`.

    Use as a context manager: leaving the block normally commits, an exception (KeyboardInterrupt
    included) discards the partial output.
    """

    def __init__(self, sink: "_Sink", path: Path) -> None:
        self._sink = sink
        self.path = path
        self.frames_written = 0

    @classmethod
    def open(cls, path: str | Path, fps: int, format: str, comment: str | None = None) -> "VideoWriter":
        """Start an output; `comment` is stored in the MP4's metadata (other formats use the sidecar)."""
        path = Path(path)
        sinks = {"mp4": _Mp4Sink, "gif": _GifSink, "png": _PngSink}
        if format not in sinks:
            raise ValueError(f"unknown format {format!r}; expected one of {FORMATS}")
        return cls(sinks[format](path, fps, comment), path)

    def write(self, frames: np.ndarray) -> None:
        """Append uint8 frames, [F, H, W, 3] or one [H, W, 3]."""
        frames = _check_frames(frames[None] if frames.ndim == 3 else frames)
        self._sink.write(frames)
        self.frames_written += len(frames)

    def close(self) -> None:
        """Finish the output and rename it into place (replacing an existing one)."""
        if self.frames_written == 0:
            self.abort()
            raise ValueError("no frames were written")
        try:
            self._sink.finish()
            _replace(self._sink.partial, self.path)
        except BaseException:
            self.abort()
            raise

    def abort(self) -> None:
        """Discard the partial output; the requested name is left as it was."""
        self._sink.discard()

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
    partial = _partial_name(path)
    try:
        with open(partial, "x", encoding="utf-8") as file:
            json.dump(summary, file, indent=2, ensure_ascii=False)
            file.write("\n")
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return path


def _partial_name(path: Path, tag: str = "partial") -> Path:
    """A hidden name beside `path` that no other writer uses, keeping the extension last so encoders
    that pick a container by extension still do: `.cat.mp4.3f9a1c2e.partial.mp4`."""
    return path.with_name(f".{path.name}.{secrets.token_hex(4)}.{tag}{path.suffix}")


def _check_frames(frames: np.ndarray) -> np.ndarray:
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"expected uint8 frames [F, H, W, 3], got {frames.dtype} {tuple(frames.shape)}")
    return frames


def _replace(partial: Path, final: Path) -> None:
    """Rename `partial` to `final`; an existing folder is moved aside first and removed after."""
    if not final.is_dir():
        os.replace(partial, final)
        return
    old = _partial_name(final, tag="old")
    final.rename(old)
    partial.rename(final)
    shutil.rmtree(old, ignore_errors=True)


class _Sink:
    """One output format: frames go to `self.partial` until `finish`."""

    partial: Path

    def write(self, frames: np.ndarray) -> None:
        raise NotImplementedError

    def finish(self) -> None:
        raise NotImplementedError

    def discard(self) -> None:
        self.partial.unlink(missing_ok=True)


def _partial_file(path: Path) -> Path:
    """Create an empty partial file. Not mkstemp: its mode 0600 would survive into the output, where
    `open` gives the usual umask-based permissions."""
    partial = _partial_name(path)
    partial.touch(exist_ok=False)
    return partial


class _Mp4Sink(_Sink):
    """H.264 in yuv420p through imageio-ffmpeg, the widest-playing MP4 there is."""

    def __init__(self, path: Path, fps: int, comment: str | None) -> None:
        self.partial = _partial_file(path)
        self.fps = fps
        self.comment = comment
        self._encoder = None  # started on the first frames, when the size is known

    def write(self, frames: np.ndarray) -> None:
        if self._encoder is None:
            self._encoder = self._start(width=frames.shape[2], height=frames.shape[1])
        for frame in frames:
            self._encoder.send(np.ascontiguousarray(frame))

    def _start(self, width: int, height: int):
        import imageio_ffmpeg

        if width % 2 or height % 2:
            raise ValueError(f"H.264 in yuv420p needs even sizes, got {width}x{height}")
        params = ["-crf", "18", "-movflags", "+faststart"]
        if self.comment is not None:
            params += ["-metadata", f"comment={self.comment}"]
        encoder = imageio_ffmpeg.write_frames(
            str(self.partial),
            (width, height),
            fps=self.fps,
            codec="libx264",
            pix_fmt_out="yuv420p",
            quality=None,  # -crf above instead
            macro_block_size=1,  # never resize: the size is the one asked for
            ffmpeg_log_level="error",
            output_params=params,
        )
        encoder.send(None)  # the generator's handshake: runs up to its first `yield`
        return encoder

    def finish(self) -> None:
        self._encoder.close()  # ffmpeg writes the index and exits

    def discard(self) -> None:
        if self._encoder is not None:
            self._encoder.close()
        super().discard()


class _GifSink(_Sink):
    """An endlessly looping GIF. Pillow writes a GIF in one call, so frames are kept until `finish`."""

    def __init__(self, path: Path, fps: int, comment: str | None) -> None:
        self.partial = _partial_file(path)
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
        self.partial = _partial_name(path)
        self.partial.mkdir()  # not mkdtemp, whose mode 0700 would stay on the output folder
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
