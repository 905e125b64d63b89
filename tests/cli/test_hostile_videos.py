"""--video files that decode badly: a GIF declaring 60000x60000 pixels (Pillow's decompression bomb
guard) and a multi-page TIFF whose pages differ in size are one line and exit 2, for v2v and stream,
before any model loads."""

import struct

import pytest
from PIL import Image


def bomb_gif(path):
    """A 1x1 GIF whose header declares a 60000x60000 screen: 3.6 billion pixels to Pillow."""
    Image.new("RGB", (1, 1)).save(path)
    data = bytearray(path.read_bytes())
    data[6:10] = struct.pack("<HH", 60000, 60000)
    path.write_bytes(bytes(data))
    return path


def mixed_tiff(path):
    Image.new("RGB", (96, 64)).save(path, save_all=True, append_images=[Image.new("RGB", (48, 32))])
    return path


@pytest.mark.parametrize(
    "command",
    [("v2v", "--model", "tiny-cogvideox"), ("stream", "--model", "tiny-helios")],
    ids=["v2v", "stream"],
)
@pytest.mark.parametrize(
    ("make", "words"),
    [
        (bomb_gif, "video 'clip.gif' is too large to read (frames over 178956970 pixels)"),
        (mixed_tiff, "video 'clip.tif' changes size: frame 2 is 48x32, the first 96x64"),
    ],
    ids=["bomb", "mixed-tiff"],
)
def test_a_video_that_cannot_be_read_whole_is_one_line_and_exit_2(
    vidgen, workdir, stand_in_pipeline, command, make, words
):
    clip = make(workdir / ("clip.gif" if make is bomb_gif else "clip.tif"))
    run = vidgen(*command, "a cat", "--video", clip.name, "-o", "out.mp4")
    assert run.exit_code == 2, (run.stderr, run.exception)
    assert len(run.stderr_lines) == 1 and words in run.stderr, run.stderr
    assert stand_in_pipeline.calls == [] and not (workdir / "out.mp4").exists()
