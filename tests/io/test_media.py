"""Reading conditioning media: any common image or video becomes uint8 RGB; failures name the file."""

import numpy as np
import pytest
from PIL import Image

from vidgen.core.errors import VidgenError
from vidgen.io.media import read_comment, read_image, read_video
from vidgen.io.writer import VideoWriter


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L", "P"])
def test_any_image_mode_reads_as_uint8_rgb(tmp_path, mode):
    Image.new("RGB", (96, 64), (200, 30, 30)).convert(mode).save(tmp_path / "in.png")
    image = read_image(tmp_path / "in.png")
    assert image.dtype == np.uint8 and image.shape == (64, 96, 3)


def test_rgb_png_reads_back_exactly(tmp_path):
    pixels = np.random.default_rng(0).integers(0, 256, (16, 32, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "in.png")
    assert np.array_equal(read_image(tmp_path / "in.png"), pixels)


def test_video_reads_as_frames_and_stops_at_max_frames(tmp_path):
    frames = np.stack([np.full((64, 96, 3), 20 * i, np.uint8) for i in range(9)])
    with VideoWriter.open(tmp_path / "in.mp4", fps=8, format="mp4") as writer:
        writer.write(frames)
    video = read_video(tmp_path / "in.mp4")
    assert video.dtype == np.uint8 and video.shape == (9, 64, 96, 3)
    assert np.abs(video.astype(int) - frames).mean() < 4
    assert read_video(tmp_path / "in.mp4", max_frames=5).shape == (5, 64, 96, 3)


@pytest.mark.parametrize("reader, what", [(read_image, "image"), (read_video, "video")])
def test_missing_file_is_a_user_error_naming_it(tmp_path, reader, what):
    with pytest.raises(VidgenError, match=f"{what} '.*nothere' does not exist"):
        reader(tmp_path / "nothere")


@pytest.mark.parametrize("reader, name", [(read_image, "bad.png"), (read_video, "bad.mp4")])
def test_unreadable_file_is_a_user_error_naming_it(tmp_path, reader, name):
    (tmp_path / name).write_bytes(b"this is not media")
    with pytest.raises(VidgenError, match=f"cannot read .* '.*{name}'") as caught:
        reader(tmp_path / name)
    assert "\n" not in str(caught.value)


def test_a_video_without_a_comment_has_none(tmp_path):
    with VideoWriter.open(tmp_path / "in.mp4", fps=8, format="mp4") as writer:
        writer.write(np.zeros((1, 16, 16, 3), np.uint8))
    assert read_comment(tmp_path / "in.mp4") is None


def test_a_16_bit_greyscale_png_keeps_its_levels(tmp_path):
    levels = np.array([[0, 16384, 32768, 65535]], np.uint16).repeat(2, axis=0)  # black .. white
    Image.fromarray(levels).save(tmp_path / "deep.png")
    assert Image.open(tmp_path / "deep.png").mode.startswith("I")  # read as 16-bit, not reduced
    image = read_image(tmp_path / "deep.png")
    assert image.dtype == np.uint8 and image.shape == (2, 4, 3)
    assert image[0, :, 0].tolist() == [0, 64, 128, 255] and (image == image[..., :1]).all()


def test_exif_orientation_turns_a_phone_photo_upright(tmp_path):
    stored = np.zeros((2, 4, 3), np.uint8)  # as the sensor saw it: 4 wide, left half red, right blue
    stored[:, :2, 0], stored[:, 2:, 2] = 255, 255
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: turn 90 degrees clockwise to show
    Image.fromarray(stored).save(tmp_path / "phone.png", exif=exif)
    image = read_image(tmp_path / "phone.png")
    assert image.shape == (4, 2, 3)  # upright: 2 wide, 4 high
    assert (image[:2, :, 0] == 255).all() and (image[2:, :, 2] == 255).all()  # red on top after turning
