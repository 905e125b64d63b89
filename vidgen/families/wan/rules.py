"""Wan's request rules: sizes in whole transformer patches (16 pixels for Wan 2.1 and 2.2 A14B, 32 for
TI2V-5B's 16x VAE: read from the folder's configs), 4k+1 frames, the second expert's guidance;
image-to-video's image (and last image), video-to-video's video cut to the most frames of that form, and
its strength."""

from vidgen.core.errors import VidgenError
from vidgen.core.model_info import ModelInfo
from vidgen.core.request import Request
from vidgen.validate.common import (
    InputReader,
    Options,
    check_size,
    check_strength,
    check_video_length,
    required,
    untrained_frames_note,
)
from vidgen.weights.presets import Preset

DEFAULT_STRENGTH = Request.__dataclass_fields__["strength"].default  # 0.8, as diffusers' Wan V2V


def wan_request(
    options: Options,
    prompt: str,
    seed: int,
    preset: Preset,
    info: ModelInfo,
    notes: list[str],
    reader: InputReader | None = None,
) -> Request:
    """The checked Wan Request: the preset's defaults filled in, sizes and frames the model takes, the
    input files read."""
    reader = reader or InputReader(max_bytes=0)  # one request: nothing worth keeping
    height, width = options.height or preset.height, options.width or preset.width
    check_size(height, width, info, options.model)
    frames = options.frames or preset.frames
    image = last_image = video = None
    if options.mode == "i2v":
        image = reader.image(required(options.image, "--image", "photo.png"))
        last_image = reader.image(options.last_image) if options.last_image else None
    if options.mode == "v2v":
        video = reader.video(required(options.video, "--video", "clip.mp4"), max_frames=frames)
        frames = options.frames or longest_valid_frames(len(video), info)
        check_video_length(len(video), frames, options.video)
        video = video[:frames]
    check_frames(frames, info)
    notes.extend(untrained_frames_note(frames, preset))
    steps = options.steps or preset.steps
    strength = options.strength if options.strength is not None else DEFAULT_STRENGTH
    if options.mode == "v2v":
        check_strength(steps, strength)
    guidance = options.guidance if options.guidance is not None else preset.guidance
    return Request(
        mode=options.mode,
        prompt=prompt,
        negative_prompt=options.negative_prompt,
        seed=seed,
        steps=steps,
        guidance=guidance,
        guidance_2=expert_guidance(options, preset, info, guidance, notes),
        height=height,
        width=width,
        frames=frames,
        fps=options.fps or preset.fps,
        image=image,
        last_image=last_image,
        video=video,
        strength=strength,
        max_sequence_length=info.max_text_tokens,
        scheduler=preset.scheduler,
    )


def check_frames(frames: int, info: ModelInfo) -> None:
    """The Wan VAE packs `temporal_scale` frames into each latent frame after the first."""
    step = info.temporal_scale
    if frames < 1 or (frames - 1) % step:
        lower = (frames - 1) // step * step + 1
        choices = " or ".join(str(n) for n in (lower, lower + step) if n >= 1 and n != frames)
        raise VidgenError(
            f"--frames {frames} is not of the form {step}k+1 (the VAE packs {step} frames into one "
            "latent frame)",
            f"use --frames {choices}",
        )


def longest_valid_frames(available: int, info: ModelInfo) -> int:
    """The most frames of the form 4k+1, at most `available` (0 for no frames)."""
    return (available - 1) // info.temporal_scale * info.temporal_scale + 1 if available else 0


def expert_guidance(
    options: Options, preset: Preset, info: ModelInfo, guidance: float, notes: list[str]
) -> float | None:
    """The low-noise expert's guidance of a two-expert model (None for one): --guidance-2; else
    --guidance, as diffusers' guidance_scale_2 follows guidance_scale when not given; else the preset's."""
    if info.experts < 2:
        return None
    if options.guidance_2 is not None:
        if guidance <= 1.0 < options.guidance_2:
            notes.append(
                f"--guidance {guidance:g} runs no guidance for either expert (as diffusers' WanPipeline), "
                f"so --guidance-2 {options.guidance_2:g} changes nothing"
            )
        return options.guidance_2
    if options.guidance is not None or preset.guidance_2 is None:
        return guidance
    return preset.guidance_2
