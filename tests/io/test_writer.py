"""Writers: each format decodes back to the frames written, and nothing half-written ever appears."""

import json
import os

import imageio.v3 as iio
import numpy as np
import pytest
from PIL import Image

from vidgen.io.media import read_comment
from vidgen.io.writer import VideoWriter, sidecar_path, write_sidecar


@pytest.fixture
def frames():
    """9 frames of 64x96: smooth gradients that move, so lossy codecs keep them recognisable."""
    y, x = np.mgrid[0:64, 0:96]
    video = [np.stack([(x * 2 + 10 * t) % 256, (y * 3) % 256, np.full_like(x, 25 * t)], -1) for t in range(9)]
    return np.stack(video).astype(np.uint8)


def test_mp4_decodes_to_the_frames_written_with_the_comment_in_its_metadata(tmp_path, frames):
    comment = json.dumps({"prompt": 'a "cat"; = # \\ walks\nhome', "seed": 3})
    with VideoWriter.open(tmp_path / "out.mp4", fps=8, format="mp4", comment=comment) as writer:
        writer.write(frames[:4])  # in two chunks, as a streaming generator would
        writer.write(frames[4:])
    decoded = iio.imread(tmp_path / "out.mp4")
    assert decoded.shape == frames.shape
    assert np.abs(decoded.astype(int) - frames).mean() < 4  # H.264 at CRF 18: close, not exact
    assert json.loads(read_comment(tmp_path / "out.mp4")) == json.loads(comment)
    assert iio.immeta(tmp_path / "out.mp4", plugin="FFMPEG")["fps"] == 8


def test_gif_decodes_to_the_frames_written(tmp_path, frames):
    with VideoWriter.open(tmp_path / "out.gif", fps=8, format="gif") as writer:
        writer.write(frames)
    decoded = iio.imread(tmp_path / "out.gif")
    assert decoded.shape[:3] == frames.shape[:3]
    assert np.abs(decoded[..., :3].astype(int) - frames).mean() < 8  # a 256-colour palette per frame


def test_png_folder_is_lossless_and_numbered(tmp_path, frames):
    with VideoWriter.open(tmp_path / "out", fps=8, format="png") as writer:
        writer.write(frames[:5])
        writer.write(frames[5:])
    names = sorted(os.listdir(tmp_path / "out"))
    assert names == [f"frame_{i:05d}.png" for i in range(9)]
    read = np.stack([np.asarray(Image.open(tmp_path / "out" / name)) for name in names])
    assert np.array_equal(read, frames)


@pytest.mark.parametrize("format, name", [("mp4", "out.mp4"), ("gif", "out.gif"), ("png", "out")])
@pytest.mark.parametrize("error", [RuntimeError("encoder broke"), KeyboardInterrupt()])
def test_failing_mid_way_leaves_nothing_under_any_name(tmp_path, frames, format, name, error):
    with pytest.raises(type(error)), VideoWriter.open(tmp_path / name, fps=8, format=format) as writer:
        writer.write(frames[:3])
        assert len(os.listdir(tmp_path)) == 1  # the hidden partial output exists while writing
        raise error
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("format, name", [("mp4", "out.mp4"), ("png", "out")])
def test_a_failed_rewrite_keeps_the_previous_output(tmp_path, frames, format, name):
    with VideoWriter.open(tmp_path / name, fps=8, format=format) as writer:
        writer.write(frames)
    before = sorted(p.name for p in tmp_path.rglob("*"))
    with pytest.raises(RuntimeError), VideoWriter.open(tmp_path / name, fps=8, format=format) as writer:
        writer.write(frames[:1])
        raise RuntimeError("disk trouble")
    assert sorted(p.name for p in tmp_path.rglob("*")) == before


def test_rewriting_replaces_a_png_folder_whole(tmp_path, frames):
    for count in (9, 3):
        with VideoWriter.open(tmp_path / "out", fps=8, format="png") as writer:
            writer.write(frames[:count])
    assert sorted(os.listdir(tmp_path / "out")) == [f"frame_{i:05d}.png" for i in range(3)]
    assert os.listdir(tmp_path) == ["out"]


def test_outputs_get_the_usual_permissions_not_a_temp_files(tmp_path, frames):
    umask = os.umask(0o022)
    try:
        for format, name in (("mp4", "a.mp4"), ("gif", "a.gif"), ("png", "a")):
            with VideoWriter.open(tmp_path / name, fps=8, format=format) as writer:
                writer.write(frames[:1])
        write_sidecar(tmp_path / "a.mp4", {})
    finally:
        os.umask(umask)
    modes = {p.name: p.stat().st_mode & 0o777 for p in tmp_path.iterdir()}
    assert modes == {"a.mp4": 0o644, "a.gif": 0o644, "a": 0o755, "a.mp4.json": 0o644}


def test_frames_must_be_uint8_rgb(tmp_path, frames):
    with pytest.raises(ValueError), VideoWriter.open(tmp_path / "x", fps=8, format="png") as writer:
        writer.write(frames.astype(np.float32))
    with pytest.raises(ValueError), VideoWriter.open(tmp_path / "x", fps=8, format="png") as writer:
        writer.write(frames[..., :2])
    assert os.listdir(tmp_path) == []


def test_sidecar_sits_beside_the_output_and_holds_the_summary(tmp_path):
    summary = {"prompt": "Zürich at night", "seed": 5, "timings": {"denoise": 1.5}}
    assert sidecar_path(tmp_path / "cat.mp4") == tmp_path / "cat.mp4.json"
    assert sidecar_path(tmp_path / "frames") == tmp_path / "frames.json"
    path = write_sidecar(tmp_path / "cat.mp4", summary)
    assert path == tmp_path / "cat.mp4.json"
    assert json.loads(path.read_text(encoding="utf-8")) == summary
    assert os.listdir(tmp_path) == ["cat.mp4.json"]


def test_a_folder_holding_other_files_is_never_replaced(tmp_path, frames):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "notes.txt").write_text("mine")
    with (
        pytest.raises(OSError, match="did not write"),
        VideoWriter.open(tmp_path / "out", 8, "png") as writer,
    ):
        writer.write(frames)
    assert os.listdir(tmp_path / "out") == ["notes.txt"] and os.listdir(tmp_path) == ["out"]


def test_a_png_stream_replaces_only_an_earlier_run_s_frames(tmp_path, frames):
    from vidgen.io.stream_writer import PngStream

    (tmp_path / "out").mkdir()
    for index in range(12):
        (tmp_path / "out" / f"frame_{index:05d}.png").write_bytes(b"old")
    PngStream(tmp_path / "out").write(frames[:3])
    assert sorted(os.listdir(tmp_path / "out")) == [f"frame_{i:05d}.png" for i in range(3)]
    (tmp_path / "out" / "notes.txt").write_text("mine")
    with pytest.raises(OSError, match="did not write"):
        PngStream(tmp_path / "out").write(frames[:3])
    assert "notes.txt" in os.listdir(tmp_path / "out")
