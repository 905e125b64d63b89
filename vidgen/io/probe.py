"""How many frames a finished output holds, read from its container without decoding a frame.

A video counts as written only when its encoder succeeded and the file is whole: the writer checks the
count it wrote, and a batch that resumes checks that an output its manifest calls done is still there
and whole. Each reader walks the container's structure (MP4 boxes, GIF blocks, PNG chunks), so a file
cut short anywhere, or not of its kind at all, reads as None.
"""

import re
import struct
from pathlib import Path
from typing import BinaryIO

FRAME_FILE = re.compile(r"frame_\d{5,}\.png")  # the PNG writers' frame files


def frame_count(path: Path) -> int | None:
    """Frames in the MP4 or GIF file or PNG-frame folder at `path`; None when missing, cut short or
    not such an output."""
    try:
        if path.is_dir():
            return _png_folder_frames(path)
        with open(path, "rb") as file:
            magic = file.read(12)
            file.seek(0)
            if magic[:6] in (b"GIF87a", b"GIF89a"):
                return _gif_frames(file)
            if magic[4:8] == b"ftyp":
                return _mp4_frames(file, path.stat().st_size)
    except (OSError, ValueError, struct.error):
        pass
    return None


def is_whole(path: Path) -> bool:
    """The output at `path` is there and holds at least one whole frame."""
    return bool(frame_count(path))


def _mp4_frames(file: BinaryIO, size: int) -> int | None:
    """Samples of the first track: moov's sample table, or the fragments' runs (a stream's MP4).
    Every top-level box must end inside the file: a cut-off mdat is a broken video."""
    frames, has_media = 0, False
    for kind, start, end in _boxes(file, 0, size):
        if end > size:
            return None
        if kind == b"moov":
            moov = _read(file, start, end)
            stsz = _descend(moov, [b"trak", b"mdia", b"minf", b"stbl", b"stsz"])
            frames += struct.unpack(">I", stsz[16:20])[0] if stsz else 0
        elif kind == b"moof":
            moof = _read(file, start, end)
            for traf in _children(moof, b"traf"):
                frames += sum(struct.unpack(">I", trun[12:16])[0] for trun in _children(traf, b"trun"))
        has_media |= kind == b"mdat"
    return frames if has_media else None


def _boxes(file: BinaryIO, start: int, end: int):
    """(type, start, end) of each top-level box, reading only their headers."""
    while start < end:
        file.seek(start)
        header = file.read(16)
        if len(header) < 8:
            raise ValueError("cut-off box header")
        size, kind = struct.unpack(">I4s", header[:8])
        if size == 1:  # a 64-bit size follows (an mdat over 4 GiB)
            size = struct.unpack(">Q", header[8:16])[0]
        elif size == 0:  # to the end of the file
            size = end - start
        if size < 8:
            raise ValueError(f"bad box size {size}")
        yield kind, start, start + size
        start += size


def _read(file: BinaryIO, start: int, end: int) -> bytes:
    file.seek(start)
    return file.read(end - start)


def _children(box: bytes, kind: bytes, header: int = 8):
    """The child boxes of type `kind` in `box` (after its `header` bytes)."""
    offset = header
    while offset + 8 <= len(box):
        size, child = struct.unpack(">I4s", box[offset : offset + 8])
        if size < 8:
            raise ValueError(f"bad box size {size}")
        if child == kind:
            yield box[offset : offset + size]
        offset += size


def _descend(box: bytes, path: list[bytes]) -> bytes | None:
    for kind in path:
        box = next(_children(box, kind), None)
        if box is None:
            return None
    return box


def _gif_frames(file: BinaryIO) -> int | None:
    """Image descriptors up to the trailer; a GIF without its trailer was cut short."""
    data = file.read()
    flags = data[10]
    offset = 13 + (3 << ((flags & 7) + 1) if flags & 0x80 else 0)  # after the global colour table
    frames = 0
    while offset < len(data):
        block = data[offset]
        if block == 0x3B:  # trailer
            return frames
        if block == 0x21:  # extension: label, then data sub-blocks
            offset = _skip_sub_blocks(data, offset + 2)
        elif block == 0x2C:  # image descriptor, local colour table, LZW code size, data sub-blocks
            local = data[offset + 9]
            offset += 10 + (3 << ((local & 7) + 1) if local & 0x80 else 0)
            offset = _skip_sub_blocks(data, offset + 1)
            frames += 1
        else:
            return None
    return None


def _skip_sub_blocks(data: bytes, offset: int) -> int:
    while offset < len(data) and data[offset]:
        offset += data[offset] + 1
    return offset + 1


def _png_folder_frames(folder: Path) -> int | None:
    """frame_00000.png ... in order, each a whole PNG (it ends with the IEND chunk)."""
    names = sorted(entry.name for entry in folder.iterdir() if FRAME_FILE.fullmatch(entry.name))
    if names != [f"frame_{index:05d}.png" for index in range(len(names))]:
        return None
    for name in names:
        with open(folder / name, "rb") as file:
            file.seek(-12, 2)
            if file.read(12)[4:8] != b"IEND":
                return None
    return len(names) or None
