"""Read the images and videos users condition on, as uint8 RGB arrays; any failure names the file."""

import re
import subprocess
from pathlib import Path

import numpy as np

from vidgen.core.errors import VidgenError, article


def read_image(path: str | Path) -> np.ndarray:
    """An image file as uint8 [H, W, 3] RGB (alpha dropped, greyscale and palettes expanded)."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    path = _existing_file(path, "image")
    try:
        with Image.open(path) as image:
            # A phone stores the picture as the sensor saw it and a tag saying how to turn it upright.
            return _image_to_rgb(ImageOps.exif_transpose(image))
    except Image.DecompressionBombError:  # Pillow's guard against images that would fill the memory
        raise VidgenError(
            f"image '{path}' is too large to read (over {2 * Image.MAX_IMAGE_PIXELS} pixels)",
            "pass a smaller image; vidgen resizes it to the video's size anyway",
        ) from None
    except (UnidentifiedImageError, OSError, ValueError) as error:
        raise VidgenError(
            f"cannot read image '{path}': {_reason(error)}", "pass a PNG, JPEG or WebP image"
        ) from None


def _image_to_rgb(image) -> np.ndarray:
    """A Pillow image as uint8 [H, W, 3]. 16-bit greyscale (modes I;16 and I) is scaled from its own
    range: Pillow's convert("RGB") clips it at 255, turning all but the darkest pixels white."""
    if image.mode.startswith("I;16") or image.mode == "I":
        grey = np.asarray(image).astype(np.float64)
        return _to_rgb((np.clip(grey, 0, 65535) * 255 / 65535).round().astype(np.uint8))
    return np.asarray(image.convert("RGB"), dtype=np.uint8).copy()


def read_video(path: str | Path, max_frames: int | None = None) -> np.ndarray:
    """A video file (or animated GIF) as uint8 [F, H, W, 3] RGB, at most `max_frames` frames."""
    import imageio.v3 as iio
    from PIL import Image

    path = _existing_file(path, "video")
    frames = []
    try:
        for frame in iio.imiter(path):
            frames.append(_to_rgb(np.asarray(frame)))
            if frames[-1].shape != frames[0].shape:  # a multi-page TIFF may hold pages of any size
                height, width = frames[0].shape[:2]
                raise VidgenError(
                    f"video '{path}' changes size: frame {len(frames)} is {frames[-1].shape[1]}x"
                    f"{frames[-1].shape[0]}, the first {width}x{height}",
                    "pass a video whose frames are all one size",
                )
            if max_frames is not None and len(frames) == max_frames:
                break
    except Image.DecompressionBombError:  # Pillow's guard, as in read_image: GIFs and TIFFs go through it
        raise VidgenError(
            f"video '{path}' is too large to read (frames over {2 * Image.MAX_IMAGE_PIXELS} pixels)",
            "pass a smaller video; vidgen resizes it to the video's size anyway",
        ) from None
    except (OSError, ValueError, RuntimeError) as error:
        raise VidgenError(
            f"cannot read video '{path}': {_reason(error)}", "pass an MP4, WebM or GIF video"
        ) from None
    if not frames:
        raise VidgenError(f"video '{path}' has no frames", "pass a video with at least one frame")
    return np.stack(frames)


def read_comment(path: str | Path) -> str | None:
    """The comment tag of a video file (vidgen's MP4s carry their summary there), or None.

    ffmpeg's metadata dump escapes "=", ";", "#", "\\" and newlines with a backslash; vidgen's
    comments are one-line JSON, so one line holds the whole value.
    """
    import imageio_ffmpeg

    path = _existing_file(path, "video")
    dump = subprocess.run(
        [imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-i", str(path), "-f", "ffmetadata", "-"],
        capture_output=True,
        text=True,
    )
    if dump.returncode != 0:
        reason = (dump.stderr.strip().splitlines() or ["ffmpeg failed"])[0]
        raise VidgenError(f"cannot read video '{path}': {reason}", "pass an MP4 that vidgen wrote")
    for line in dump.stdout.splitlines():
        if line.startswith("comment="):
            return re.sub(r"\\(.)", r"\1", line.removeprefix("comment="))
    return None


def _existing_file(path: str | Path, what: str) -> Path:
    path = Path(path).expanduser()
    if not path.exists():
        raise VidgenError(f"{what} '{path}' does not exist", f"check the path to the {what}")
    if not path.is_file():
        raise VidgenError(f"{what} '{path}' is not a file", f"pass the path to {article(what)} {what} file")
    return path


def _to_rgb(frame: np.ndarray) -> np.ndarray:
    """[H, W], [H, W, 1], [H, W, 3] or [H, W, 4] of any integer depth -> uint8 [H, W, 3]."""
    if frame.dtype != np.uint8:
        frame = (frame.astype(np.float64) * 255 / np.iinfo(frame.dtype).max).round().astype(np.uint8)
    if frame.ndim == 2:
        frame = frame[..., None]
    if frame.shape[-1] == 1:
        frame = np.repeat(frame, 3, axis=-1)
    return np.ascontiguousarray(frame[..., :3])


def _reason(error: Exception) -> str:
    """The first line of an exception's message: decoders can be verbose."""
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__
