"""Bounds on the numbers every command takes (t2v, i2v, v2v, stream and each batch job), checked in
constant time before anything loads.

A value outside them is no video any released model can make: infinite or NaN guidance turns every
latent into NaN (an all-black video), and a frame count or pixel side in the billions only ends in a
hang, a traceback or the kernel's out-of-memory killer. The ceilings are generous, so that every size
and setting a model might still be pushed to stays allowed; the memory estimate refuses sizes that
pass here but cannot fit this machine.
"""

import math

from vidgen.core.errors import VidgenError
from vidgen.validate.common import Options

# The released models use 1.0 (Helios-Distilled) to 6 (CogVideoX); past about 20 a video is burnt out.
# 100 leaves room to experiment and keeps the arithmetic finite.
MAX_GUIDANCE = 100.0
# The largest trained side is 1360 px (CogVideoX 1.5); 4096 (a 4K frame) is three times that. One
# 4096x4096 frame already needs a 512x512 latent grid: 65,536 attention tokens per latent frame.
MAX_SIDE = 4096
# CogVideoX takes at most 161 frames in one pass; Helios streams chunk by chunk, so its videos may be
# long. A million frames is over 11 hours at 24 fps: longer than any run, and small enough to count.
MAX_FRAMES = 1_000_000
# A flow-matching sampler's shift: the released Wan folders use 3.0 (480p) and 5.0 (720p), diffusers
# suggests up to 12 for large videos; 0 would put every step at sigma 0 (no denoising at all).
FLOW_SHIFT_RANGE = (0.1, 100.0)


def check_numbers(options: Options) -> None:
    """Refuse NaN, infinities and sizes no model can take; every check is a comparison or two."""
    _check_range("--guidance", options.guidance, 0.0, MAX_GUIDANCE, "pass e.g. --guidance 6")
    _check_range("--guidance-2", options.guidance_2, 0.0, MAX_GUIDANCE, "pass e.g. --guidance-2 3")
    _check_range("--strength", options.strength, 0.0, 1.0, "pass e.g. --strength 0.8")
    _check_range("--height", options.height, 16, MAX_SIDE, "pass e.g. --height 480")
    _check_range("--width", options.width, 16, MAX_SIDE, "pass e.g. --width 720")
    _check_range("--frames", options.frames, 1, MAX_FRAMES, "pass e.g. --frames 49")
    _check_range("--flow-shift", options.flow_shift, *FLOW_SHIFT_RANGE, "pass e.g. --flow-shift 5")
    seconds = getattr(options, "seconds", None)  # `vidgen stream` only
    if seconds is not None and not (math.isfinite(seconds) and seconds > 0):
        raise VidgenError(f"--seconds {seconds} is not a positive duration", "pass e.g. --seconds 60")
    _check_range("--seconds", seconds, 0.0, float(MAX_FRAMES), "pass e.g. --seconds 60")


def check_frame_count(frames: int) -> None:
    """The frames a request ends with (a duration times the frame rate) stay countable too."""
    if frames > MAX_FRAMES:
        raise VidgenError(
            f"{frames} frames is more than vidgen makes ({MAX_FRAMES:,})", "pass fewer --seconds or --frames"
        )


def _check_range(option: str, value: float | None, low: float, high: float, example: str) -> None:
    if value is None:
        return
    if not math.isfinite(value):
        raise VidgenError(f"{option} {value} is not a finite number", example)
    if value < low:
        raise VidgenError(f"{option} {_shown(value)} is too small (at least {_shown(low)})", example)
    if value > high:
        raise VidgenError(f"{option} {_shown(value)} is too large (at most {_shown(high)})", example)


def _shown(value: float) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)
