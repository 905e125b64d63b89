"""Outputs that grow chunk by chunk under their final name, for `vidgen stream`.

Unlike `VideoWriter` (a hidden partial file renamed into place when complete), a stream is written
where the user asked, so it can be watched while it grows and keeps every finished chunk when the run
stops early. Each `write` leaves the output whole: an MP4 that decodes to every frame written so far,
or a folder of complete PNG files. Nothing is created before the first chunk arrives.
"""

import os
from contextlib import suppress
from pathlib import Path
from typing import BinaryIO, Protocol

import numpy as np

from vidgen.io.fmp4 import FragmentedMp4
from vidgen.io.partials import Hold, partial_name
from vidgen.io.writer import foreign_entries, publish


class ChunkWriter(Protocol):
    frames_written: int

    def write(self, frames: np.ndarray) -> None:
        """Append uint8 frames [F, H, W, 3]; when it returns they are in the output."""

    def close(self) -> None:
        """Release the output (a file is closed; a pipe stays open for its owner)."""


class Mp4Stream:
    """A fragmented MP4 at `path`, or on `pipe`. The first chunk goes to a hidden partial file renamed
    over `path` once whole, so a stream that fails before its first chunk leaves what was there; a
    later chunk that fails (a full disk) is cut off again, so the file still ends on a whole chunk."""

    def __init__(
        self,
        fps: int,
        comment: str | None,
        path: Path | None = None,
        pipe: BinaryIO | None = None,
        replace: bool = True,
    ):
        if (path is None) == (pipe is None):
            raise ValueError("give a path or a pipe")
        self.path, self.fps, self.comment, self.replace = path, fps, comment, replace
        self._out = pipe
        self._mp4: FragmentedMp4 | None = None
        self._whole = 0  # bytes of whole chunks in the file

    @property
    def frames_written(self) -> int:
        return self._mp4.frames_written if self._mp4 else 0

    def write(self, frames: np.ndarray) -> None:
        if self._mp4 is None and self.path is not None:
            self._first_chunk(frames)
            return
        if self._mp4 is None:
            self._mp4 = FragmentedMp4(self._out, self.fps, self.comment)
        try:
            self._mp4.append(frames)
        except OSError:
            if self.path is not None:
                with suppress(OSError):
                    self._out.truncate(self._whole)
                    self._out.seek(self._whole)
            raise
        if self.path is not None:
            self._whole = self._out.tell()

    def _first_chunk(self, frames: np.ndarray) -> None:
        partial = partial_name(self.path)
        out = open(partial, "xb", buffering=0)  # noqa: SIM115 - held open across chunks, closed in close()
        hold = Hold(partial)
        try:
            mp4 = FragmentedMp4(out, self.fps, self.comment)
            mp4.append(frames)
            if self.replace:
                os.replace(partial, self.path)
            else:  # FileExistsError when another run wrote the same name meanwhile
                publish(partial, self.path)
        except BaseException:
            out.close()
            partial.unlink(missing_ok=True)
            raise
        finally:
            hold.release()
        self._out, self._mp4, self._whole = out, mp4, out.tell()

    def close(self) -> None:
        if self.path is not None and self._out is not None:
            self._out.close()


class PngStream:
    """A folder of lossless frames, frame_00000.png, ...; each file appears whole (written, then renamed)."""

    def __init__(self, folder: Path, replace: bool = True) -> None:
        self.folder = folder
        self.replace = replace
        self.frames_written = 0

    def write(self, frames: np.ndarray) -> None:
        from PIL import Image

        if self.frames_written == 0:
            self._clear()
        names = [f"frame_{self.frames_written + index:05d}.png" for index in range(len(frames))]
        try:
            for frame, name in zip(frames, names, strict=True):
                partial = self.folder / f".{name}.partial"
                Image.fromarray(frame).save(partial, format="png")
                os.replace(partial, self.folder / name)
        except BaseException:  # the folder keeps whole chunks only (a full disk stops mid-chunk)
            for name in names:
                (self.folder / name).unlink(missing_ok=True)
                (self.folder / f".{name}.partial").unlink(missing_ok=True)
            raise
        self.frames_written += len(frames)

    def _clear(self) -> None:
        """An empty folder to write into: an earlier run's frames (which --overwrite allowed replacing)
        are removed; a folder holding anything else is not vidgen's to empty (checked before too).
        Without `replace`, a folder that appeared since the checks (another run's) is left alone:
        FileExistsError."""
        if not self.replace or not self.folder.is_dir():
            self.folder.mkdir()
            return
        foreign = foreign_entries(self.folder)
        if foreign:
            raise OSError(
                f"'{self.folder}' holds files vidgen did not write ({foreign[0]}); not replacing it"
            )
        for entry in self.folder.iterdir():
            entry.unlink()

    def close(self) -> None:
        pass
