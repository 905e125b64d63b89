"""Frame counts read from the container: whole outputs give their count, any cut-off copy gives None."""

import numpy as np
import pytest

from vidgen.io.fmp4 import FragmentedMp4
from vidgen.io.probe import frame_count, is_whole
from vidgen.io.writer import VideoWriter


@pytest.fixture
def frames():
    return np.stack([np.full((32, 48, 3), 25 * t, np.uint8) for t in range(9)])


@pytest.mark.parametrize("format, name", [("mp4", "v.mp4"), ("gif", "v.gif"), ("png", "v")])
def test_a_whole_output_counts_its_frames(tmp_path, frames, format, name):
    with VideoWriter.open(tmp_path / name, fps=8, format=format) as writer:
        writer.write(frames)
    assert frame_count(tmp_path / name) == 9 and is_whole(tmp_path / name)


def test_a_fragmented_mp4_counts_the_frames_of_every_fragment(tmp_path, frames):
    with open(tmp_path / "s.mp4", "wb") as out:
        stream = FragmentedMp4(out, fps=8)
        stream.append(frames[:4])
        stream.append(frames[4:])
    assert frame_count(tmp_path / "s.mp4") == 9


@pytest.mark.parametrize("format, name", [("mp4", "v.mp4"), ("gif", "v.gif")])
@pytest.mark.parametrize("cut", [0.5, 0.99])
def test_a_file_cut_short_is_not_whole(tmp_path, frames, format, name, cut):
    with VideoWriter.open(tmp_path / name, fps=8, format=format) as writer:
        writer.write(frames)
    data = (tmp_path / name).read_bytes()
    (tmp_path / name).write_bytes(data[: int(len(data) * cut)])
    assert frame_count(tmp_path / name) is None and not is_whole(tmp_path / name)


def test_a_png_folder_missing_a_frame_or_holding_a_cut_one_is_not_whole(tmp_path, frames):
    with VideoWriter.open(tmp_path / "v", fps=8, format="png") as writer:
        writer.write(frames)
    (tmp_path / "v" / "frame_00004.png").write_bytes((tmp_path / "v" / "frame_00003.png").read_bytes()[:-20])
    assert frame_count(tmp_path / "v") is None
    (tmp_path / "v" / "frame_00004.png").unlink()
    assert frame_count(tmp_path / "v") is None


@pytest.mark.parametrize("content", [b"", b"not a video at all", b"\0\0\0\x08ftyp"])
def test_missing_or_foreign_files_are_not_whole(tmp_path, content):
    (tmp_path / "x.mp4").write_bytes(content)
    assert frame_count(tmp_path / "x.mp4") is None and frame_count(tmp_path / "nothing.mp4") is None
