"""CogVideoX's request rules: 8k+1 frames that the VAE decodes back to the same count, sizes the
rotary grid or the learned positions can take, and the video-to-video input cut to a valid length.
"""

from vidgen.core.errors import VidgenError
from vidgen.core.model_info import ModelInfo
from vidgen.core.request import Request
from vidgen.validate.common import (
    InputReader,
    Options,
    check_size,
    check_strength,
    check_video_length,
    fixed_size_message,
    required,
    untrained_frames_note,
)
from vidgen.weights.presets import Preset

DEFAULT_STRENGTH = Request.__dataclass_fields__["strength"].default


def cogvideox_request(
    options: Options,
    prompt: str,
    seed: int,
    preset: Preset,
    info: ModelInfo,
    notes: list[str],
    reader: InputReader | None = None,
) -> Request:
    """The checked CogVideoX Request: defaults filled in, sizes fit the model, media read."""
    reader = reader or InputReader(max_bytes=0)  # one request: nothing worth keeping
    height, width, frames = default_size(preset, info)
    height, width = options.height or height, options.width or width
    check_size(height, width, info, options.model)
    image = video = None
    if options.mode == "i2v":
        image = reader.image(required(options.image, "--image", "photo.png"))
    if options.mode == "v2v":
        video = reader.video(
            required(options.video, "--video", "clip.mp4"), max_frames=options.frames or frames
        )
        frames = options.frames or longest_valid_frames(len(video), info, "v2v")
        check_video_length(len(video), frames, options.video)
        video = video[:frames]
    frames = options.frames or frames
    check_frames(frames, info, options.mode, options.model)
    notes.extend(_frames_notes(frames, preset, info, options.mode))
    steps = options.steps or preset.steps
    strength = options.strength if options.strength is not None else DEFAULT_STRENGTH
    if options.mode == "v2v":
        check_strength(steps, strength)
    return Request(
        mode=options.mode,
        prompt=prompt,
        negative_prompt=options.negative_prompt,
        seed=seed,
        steps=steps,
        guidance=options.guidance if options.guidance is not None else preset.guidance,
        dynamic_cfg=options.dynamic_cfg if options.dynamic_cfg is not None else preset.dynamic_cfg,
        height=height,
        width=width,
        frames=frames,
        fps=options.fps or preset.fps,
        image=image,
        video=video,
        strength=strength,
        max_sequence_length=info.max_text_tokens,
        scheduler=preset.scheduler,
    )


def default_size(preset: Preset, info: ModelInfo) -> tuple[int, int, int]:
    """Height, width, frames: the preset's, unless the model cannot take them (then its sample size).

    That matters for folders matched to a released preset: a tiny 1.5-shaped folder cannot take
    1.5's 1360x768, and a learned-position model takes only its own sample size.
    """
    if info.fixed_size:
        return info.sample_size
    limit = info.max_size
    if limit and (preset.height > limit[0] or preset.width > limit[1]):
        return (*limit, preset.frames)
    return preset.height, preset.width, preset.frames


def check_frames(frames: int, info: ModelInfo, mode: str, name: str) -> None:
    if info.fixed_size and frames != info.sample_size[2]:
        raise VidgenError(fixed_size_message(name, info), "drop --height/--width/--frames")
    problem = frames_problem(frames, info, mode)
    if problem:
        raise VidgenError(f"--frames {frames} {problem}", f"use {_nearest_valid_frames(frames, info, mode)}")


def frames_problem(frames: int, info: ModelInfo, mode: str) -> str | None:
    """Why the model cannot make exactly `frames` frames in `mode`, or None when it can."""
    step = info.temporal_scale
    if (frames - 1) % step:
        return f"is not of the form {step}k+1 (the VAE packs {step} frames into one latent frame)"
    latent_frames = info.latent_frames(frames)
    if mode == "v2v" and info.patch_size_t and latent_frames % info.patch_size_t:
        # diffusers' video-to-video pipeline cannot pad a given video's latents (T2V and I2V pad).
        return f"gives {latent_frames} latent frames, not a multiple of this model's temporal patch"
    if mode != "v2v" or not info.patch_size_t:
        decoded = info.decoded_frames(latent_frames)
        if decoded != frames:
            return f"gives {latent_frames} latent frames, which the VAE decodes to {decoded} frames"
    return None


def _nearest_valid_frames(frames: int, info: ModelInfo, mode: str) -> str:
    # Valid counts repeat every 2 latent frames (times the temporal patch): a window a few periods wide
    # on each side holds the nearest ones, however large `frames` is.
    reach = 4 * info.temporal_scale * (info.patch_size_t or 1)
    window = range(max(1, frames - reach), frames + reach)
    valid = [n for n in window if not frames_problem(n, info, mode)]
    lower = [n for n in valid if n < frames][-1:]
    upper = [n for n in valid if n > frames][:1]
    return "--frames " + " or ".join(str(n) for n in lower + upper)


def longest_valid_frames(available: int, info: ModelInfo, mode: str) -> int:
    """The most frames, at most `available`, that the model takes (0 when none fit)."""
    for frames in range(available, 0, -1):
        if not frames_problem(frames, info, mode):
            return frames
    return 0


def _frames_notes(frames: int, preset: Preset, info: ModelInfo, mode: str) -> list[str]:
    notes = [] if info.fixed_size else untrained_frames_note(frames, preset)
    decoded = info.decoded_frames(info.latent_frames(frames))
    if decoded != frames:  # only 1.5's video-to-video gets here: check_frames refuses the rest
        notes.append(
            f"the output will have {decoded} frames for {frames} input frames: the VAE decodes an even "
            "number of latent frames to 4 frames each (diffusers does the same)"
        )
    return notes
