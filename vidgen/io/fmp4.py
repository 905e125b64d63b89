"""A fragmented MP4 that grows one chunk at a time and plays after every chunk, even if cut off.

Each chunk is encoded by its own ffmpeg run into a tiny fragmented MP4 (ftyp, moov, then one moof+mdat
fragment per keyframe); the first chunk's header and every chunk's fragments are appended to the
output. So the output always ends on a whole chunk: a player or decoder reading it while it grows, or
after Ctrl-C or a crash, sees every chunk finished so far, and nothing stays buffered in an encoder
(one long-running ffmpeg holds each fragment back until the next one starts, so the newest chunk
would show up only when the one after it does).

Appending needs two fields of each fragment rewritten: its sequence number (mfhd), and its start
time (tfdt), which every ffmpeg run begins at 0. Every run must write the same header (same size,
codec settings and metadata), which `append` checks, so that one header describes all fragments.
"""

import struct
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import numpy as np

from vidgen.io import ffmpeg

# libx264 in yuv420p as the whole-video writer uses; no B-frames, so that presentation and decoding
# times are equal and a fragment's start time is all there is to shift; one keyframe per chunk.
X264 = ["-c:v", "libx264", "-pix_fmt", "yuv420p", "-crf", "18", "-bf", "0", "-sc_threshold", "0"]
MOVFLAGS = ["-movflags", "frag_keyframe+empty_moov+default_base_moof"]


class FragmentedMp4:
    """Appends chunks of uint8 frames [F, H, W, 3] to `out` (a file or a pipe) as MP4 fragments."""

    def __init__(self, out: BinaryIO, fps: int, comment: str | None = None) -> None:
        self.out, self.fps, self.comment = out, fps, comment
        self.header: bytes | None = None  # ftyp + moov of the first chunk
        self.frame_duration = 0  # in the track's timescale, read from the first header
        self.fragments = 0
        self.frames_written = 0

    def append(self, frames: np.ndarray) -> None:
        """Encode `frames` and append them; when this returns they are in `out` and flushed. Raises
        OSError when `out` fails (a full disk, a closed pipe): then the chunk counts as not written."""
        encoded = encode_chunk(frames, self.fps, self.comment)
        boxes = list(split_boxes(encoded))
        header = b"".join(box for kind, box in boxes if kind in (b"ftyp", b"moov"))
        if self.header is not None and header != self.header:
            raise RuntimeError("ffmpeg wrote a different MP4 header for a later chunk; cannot append it")
        frame_duration = self.frame_duration or timescale(header) // self.fps
        start, fragments = self.frames_written * frame_duration, self.fragments
        data = [] if self.header is not None else [header]
        for kind, box in boxes:
            if kind == b"moof":
                fragments += 1
                box = renumbered_fragment(box, fragments, start)
            if kind in (b"moof", b"mdat"):  # mfra, an index of this run's offsets, would be wrong here
                data.append(box)
        write_all(self.out, b"".join(data))
        self.out.flush()
        self.header, self.frame_duration, self.fragments = header, frame_duration, fragments
        self.frames_written += len(frames)


def write_all(out: BinaryIO, data: bytes) -> None:
    """Write every byte: an unbuffered file may take part of them in one call (as a disk fills)."""
    view = memoryview(data)
    while view:
        written = out.write(view)
        view = view[written if written is not None else len(view) :]


def encode_chunk(frames: np.ndarray, fps: int, comment: str | None = None) -> bytes:
    """uint8 [F, H, W, 3] -> a complete fragmented MP4 of those frames, in memory (one chunk's worth)."""
    count, height, width, _ = frames.shape
    if width % 2 or height % 2:
        raise ValueError(f"H.264 in yuv420p needs even sizes, got {width}x{height}")
    # Into a file, not a pipe: on a pipe ffmpeg cannot go back to fill in the size of a header larger
    # than its 32 KiB output buffer (a long prompt's comment), and writes a moov of size 0.
    with ffmpeg.metadata_input(comment) as metadata, tempfile.TemporaryDirectory(prefix="vidgen-") as folder:
        chunk = Path(folder) / "chunk.mp4"
        command = [
            ffmpeg.executable(),
            *("-v", "error", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{width}x{height}"),
            *("-r", str(fps), "-i", "-", *metadata),
            *ffmpeg.metadata_mapping(comment),
            *X264,
            *("-g", str(count)),
            *MOVFLAGS,
            *("-f", "mp4", str(chunk)),
        ]
        # A session of its own (Ctrl-C goes to vidgen, which finishes the chunk, not to ffmpeg, which
        # would stop halfway through it), and gone with vidgen if vidgen is killed.
        done = ffmpeg.run(command, input=np.ascontiguousarray(frames).tobytes())
        if done.returncode != 0:
            raise OSError(f"the encoder failed on a chunk: {ffmpeg.failure(done.returncode, done.stderr)}")
        return chunk.read_bytes()


def split_boxes(data: bytes, start: int = 0, end: int | None = None) -> Iterator[tuple[bytes, bytes]]:
    """The top-level ISO-BMFF boxes in data[start:end], as (type, whole box)."""
    end = len(data) if end is None else end
    while start < end:
        size, kind = struct.unpack(">I4s", data[start : start + 8])
        if size < 8:  # 0 (to the end of the file) and 1 (64-bit size): ffmpeg writes neither here
            raise ValueError(f"unsupported MP4 box size {size} for {kind!r}")
        yield kind, data[start : start + size]
        start += size


def timescale(header: bytes) -> int:
    """The video track's timescale (ticks per second), from moov/trak/mdia/mdhd."""
    mdhd = _find(header, [b"moov", b"trak", b"mdia", b"mdhd"])
    version = mdhd[8]
    offset = 28 if version == 1 else 20  # after the 32- or 64-bit creation and modification times
    return struct.unpack(">I", mdhd[offset : offset + 4])[0]


def renumbered_fragment(moof: bytes, sequence: int, start: int) -> bytes:
    """`moof` with sequence number `sequence` and every track fragment shifted to begin at `start`."""
    box = bytearray(moof)
    for kind, offset, size in _children(box, 0):
        if kind == b"mfhd":
            box[offset + 12 : offset + 16] = struct.pack(">I", sequence)
        if kind == b"traf":
            for inner, at, _ in _children(box, offset, offset + size):
                if inner == b"tfdt":
                    _shift_tfdt(box, at, start)
    return bytes(box)


def _shift_tfdt(box: bytearray, at: int, start: int) -> None:
    fmt, width = (">Q", 8) if box[at + 8] == 1 else (">I", 4)  # version 1: 64-bit decode time
    (time,) = struct.unpack(fmt, box[at + 12 : at + 12 + width])
    box[at + 12 : at + 12 + width] = struct.pack(fmt, time + start)


def _children(
    data: bytes | bytearray, parent: int, end: int | None = None
) -> Iterator[tuple[bytes, int, int]]:
    """(type, offset, size) of each box inside the box at `parent` (its 8-byte header skipped)."""
    end = parent + struct.unpack(">I", data[parent : parent + 4])[0] if end is None else end
    offset = parent + 8
    while offset < end:
        size, kind = struct.unpack(">I4s", data[offset : offset + 8])
        yield kind, offset, size
        offset += size


def _find(data: bytes, path: list[bytes]) -> bytes:
    """The first box along `path` from the top level, e.g. [b"moov", b"trak", b"mdia", b"mdhd"]."""
    boxes = dict(split_boxes(data))
    box = boxes[path[0]]
    for kind in path[1:]:
        box = next(child for child_kind, child in split_boxes(box, 8) if child_kind == kind)
    return box
