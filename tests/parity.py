"""What "equal to diffusers" means for frames, in one place, and small helpers the parity tests share.

vidgen's transformers match diffusers' to ~1e-6 relative (float rounding), which moves at most one uint8
level for a few thousandths of a percent of values. The bound (max one level, >= 99.9% identical, floats
within 1e-4) keeps ~10x headroom and still fails any real mistake, which changes most pixels by far more.
"""

import numpy as np
from PIL import Image

FLOAT_TOLERANCE = 1e-4
MIN_IDENTICAL_UINT8 = 0.999


def to_uint8(frames: np.ndarray) -> np.ndarray:
    """diffusers' float frames in [0, 1] -> uint8, rounded as its own PIL/np conversion does."""
    return (frames * 255).round().astype(np.uint8)


def assert_uint8_matches(ours: np.ndarray, reference: np.ndarray) -> None:
    """uint8 frames within one level of diffusers' uint8 frames, nearly all identical."""
    assert ours.dtype == np.uint8 and ours.shape == reference.shape
    difference = np.abs(ours.astype(int) - reference.astype(int))
    assert difference.max() <= 1
    assert (difference == 0).mean() >= MIN_IDENTICAL_UINT8


def assert_matches_within_rounding(frames: np.ndarray, floats: np.ndarray, reference: np.ndarray) -> None:
    """vidgen's uint8 frames and the floats they round from against diffusers' float frames."""
    assert np.abs(floats - reference).max() <= FLOAT_TOLERANCE
    assert_uint8_matches(frames, to_uint8(reference))


def read_png_folder(folder) -> np.ndarray:
    return np.stack([np.asarray(Image.open(path)) for path in sorted(folder.glob("frame_*.png"))])


class Recorder:
    """A Progress that remembers what it was told."""

    def __init__(self) -> None:
        self.events: list[tuple] = []

    def start_stage(self, name: str, total: int | None = None) -> None:
        self.events.append(("start", name, total))

    def advance(self, steps: int = 1) -> None:
        self.events.append(("advance", steps))

    def end_stage(self) -> None:
        self.events.append(("end",))
