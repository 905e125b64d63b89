"""The fragmented MP4 writer: after every appended chunk the file decodes to exactly the frames written
so far, in order and with steady timestamps, and it carries the metadata comment."""

import subprocess

import imageio.v3 as iio
import imageio_ffmpeg
import numpy as np
import pytest

from vidgen.io.fmp4 import FragmentedMp4, split_boxes
from vidgen.io.media import read_comment
from vidgen.io.stream_writer import Mp4Stream, PngStream

HEIGHT, WIDTH, FPS = 32, 48, 24


def chunk(index: int, frames: int = 33) -> np.ndarray:
    """Flat grey frames whose level encodes (chunk, frame), so order is visible after lossy coding."""
    levels = (index * 40 + np.arange(frames) * 3) % 250
    return np.broadcast_to(levels[:, None, None, None], (frames, HEIGHT, WIDTH, 3)).astype(np.uint8)


def decoded_levels(path) -> np.ndarray:
    return iio.imread(path).mean(axis=(1, 2, 3))


def test_file_decodes_to_every_frame_written_after_each_chunk(tmp_path):
    path = tmp_path / "out.mp4"
    expected = []
    with open(path, "wb") as out:
        mp4 = FragmentedMp4(out, FPS, comment='{"seed": 7}')
        for index, count in enumerate((33, 33, 31)):
            mp4.append(chunk(index, count))
            expected.append(chunk(index, count)[:, 0, 0, 0])
            levels = decoded_levels(path)
            assert len(levels) == sum(len(e) for e in expected)
            assert np.abs(levels - np.concatenate(expected)).max() < 3
    assert read_comment(path) == '{"seed": 7}'
    assert [kind for kind, _ in split_boxes(path.read_bytes())].count(b"moov") == 1


def test_timestamps_run_on_across_chunks(tmp_path):
    path = tmp_path / "out.mp4"
    with open(path, "wb") as out:
        mp4 = FragmentedMp4(out, FPS)
        for index in range(3):
            mp4.append(chunk(index))
    # ffmpeg's own demuxer and decoder: no complaint (non-monotonic timestamps would be reported),
    # and the duration is the frames' (99 at 24 fps = 4.125 s).
    probe = subprocess.run(
        [imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-i", str(path), "-f", "null", "-"],
        capture_output=True,
        text=True,
    )
    assert probe.returncode == 0 and probe.stderr == ""
    assert iio.immeta(path)["duration"] == pytest.approx(99 / FPS, abs=0.05)


def test_stream_writers_create_nothing_before_the_first_chunk(tmp_path):
    mp4, png = Mp4Stream(FPS, None, path=tmp_path / "a.mp4"), PngStream(tmp_path / "frames")
    assert list(tmp_path.iterdir()) == []
    mp4.write(chunk(0))
    png.write(chunk(0, 3))
    mp4.close()
    assert len(iio.imread(tmp_path / "a.mp4")) == 33
    assert sorted(p.name for p in (tmp_path / "frames").iterdir()) == [f"frame_0000{i}.png" for i in range(3)]
