"""Helios' request rules, for `vidgen stream` and for `vidgen t2v/i2v/v2v/batch --model helios-*`.

Helios generates whole chunks of 33 frames (9 latent frames), so a frame count or a duration rounds up
to whole chunks; its pyramid models (Mid, Distilled) sample in stages and need sizes whose latent grid
halves at each stage. Steps: Helios-Base takes `--steps`; a pyramid model takes `--pyramid-steps`
(one count per stage) or `--steps N`, N in every stage.
"""

import math

from vidgen.core.errors import VidgenError
from vidgen.core.model_info import ModelInfo
from vidgen.core.request import Request
from vidgen.families.helios.chunks import HeliosSettings, plan_chunks, window_frames
from vidgen.validate.common import InputReader, Options, check_size, required
from vidgen.weights.presets import Preset


def helios_request(
    options: Options,
    prompt: str,
    seed: int,
    preset: Preset,
    info: ModelInfo,
    notes: list[str],
    reader: InputReader | None = None,
) -> Request:
    """The checked Helios Request, sampling settings in `Request.settings`."""
    reader = reader or InputReader(max_bytes=0)  # one request: nothing worth keeping
    _refuse_cogvideox_options(options)
    height, width = options.height or preset.height, options.width or preset.width
    check_size(height, width, info, options.model)
    fps = options.fps or preset.fps
    whole_chunks = getattr(options, "whole_chunks", False)  # `vidgen stream --whole-chunks`
    frames = output_frames(_requested_frames(options, preset, fps), info, fps, notes, whole_chunks)
    pyramid_steps = _pyramid_steps(options, info, preset)
    image = reader.image(required(options.image, "--image", "photo.png")) if options.mode == "i2v" else None
    video = _input_video(options, info, reader) if options.mode == "v2v" else None
    return Request(
        mode=options.mode,
        prompt=prompt,
        negative_prompt=options.negative_prompt,
        seed=seed,
        # A pyramid model's steps live in `settings`; this is what --steps repeats (equal stages).
        steps=max(pyramid_steps) if pyramid_steps else options.steps or preset.steps,
        guidance=_guidance(options, info, preset, notes),
        height=height,
        width=width,
        frames=frames,
        fps=fps,
        image=image,
        video=video,
        max_sequence_length=info.max_text_tokens,  # 512; the Request default (226) changes the video
        scheduler=preset.scheduler,
        settings=_settings(options, info, preset, pyramid_steps, whole_chunks, notes),
    )


def chunk_count(frames: int, info: ModelInfo) -> int:
    """Chunks for `frames` frames, rounding up (as the chunk generator plans them)."""
    return plan_chunks(frames, info.temporal_scale).chunks


def output_frames(
    requested: int, info: ModelInfo, fps: int, notes: list[str], whole_chunks: bool = False
) -> int:
    """The frames a video of `requested` frames has: whole chunks, cut to 4k+1 as diffusers does
    (unless `whole_chunks`)."""
    plan = plan_chunks(requested, info.temporal_scale, whole_chunks=whole_chunks)
    total = plan.total_frames
    if total != requested:
        notes.append(
            f"{_count(requested, 'frame')} take{'s' * (requested == 1)} {_count(plan.chunks, 'chunk')} of "
            f"{plan.window_frames}: "
            f"the video has {total} frames ({total / fps:.1f} s at {fps} fps)"
        )
    return total


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'s' * (number != 1)}"


def _requested_frames(options: Options, preset: Preset, fps: int) -> int:
    seconds = getattr(options, "seconds", None)
    if seconds is not None and options.frames is not None:
        raise VidgenError("--frames and --seconds both given", "pass one of them")
    if seconds is not None:
        if not seconds > 0 or math.isinf(seconds):
            raise VidgenError(f"--seconds {seconds} is not a positive duration", "pass e.g. --seconds 60")
        return math.ceil(seconds * fps)
    return options.frames or preset.frames


def _pyramid_steps(options: Options, info: ModelInfo, preset: Preset) -> tuple[int, ...]:
    """Steps per stage for a pyramid model (empty for Helios-Base), from --pyramid-steps or --steps."""
    given = getattr(options, "pyramid_steps", None)
    stages = info.pyramid_stages
    if stages == 1:
        if given is not None:
            raise VidgenError(
                f"--pyramid-steps is for pyramid models; '{options.model}' samples in one stage",
                "use --steps, or a pyramid model such as helios-distilled",
            )
        return ()
    if given is None:
        return (options.steps or preset.steps,) * stages
    if options.steps is not None:
        raise VidgenError("--steps and --pyramid-steps both given", "pass one of them")
    steps = _parse_steps(given)
    if len(steps) != stages:
        raise VidgenError(
            f"--pyramid-steps {given} gives {len(steps)} stages; '{options.model}' samples in {stages}",
            f"give {stages} counts, e.g. --pyramid-steps {','.join(['2'] * stages)}",
        )
    return steps


def _parse_steps(text: str) -> tuple[int, ...]:
    try:
        steps = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise VidgenError(f"--pyramid-steps {text} is not a list of counts", "write e.g. 2,2,2") from None
    if min(steps) < 1 or max(steps) > 1000:
        raise VidgenError(f"--pyramid-steps {text} has a count outside 1..1000", "write e.g. 2,2,2")
    return steps


def _guidance(options: Options, info: ModelInfo, preset: Preset, notes: list[str]) -> float:
    if info.architecture != "helios-distilled":
        return options.guidance if options.guidance is not None else preset.guidance
    if options.guidance not in (None, 1.0):
        notes.append(f"Helios-Distilled samples without guidance; --guidance {options.guidance} is ignored")
    return 1.0


def _settings(
    options: Options,
    info: ModelInfo,
    preset: Preset,
    pyramid_steps: tuple[int, ...],
    whole_chunks: bool,
    notes: list[str],
) -> tuple[tuple[str, object], ...]:
    """HeliosSettings fields that differ by model and option, as sorted pairs."""
    amplify = getattr(options, "amplify_first_chunk", None)
    amplify = preset.amplify_first_chunk if amplify is None else amplify
    if amplify and info.architecture != "helios-distilled":
        notes.append("only Helios-Distilled's scheduler amplifies the first chunk; it changes nothing here")
    settings: dict[str, object] = {"whole_chunks": True} if whole_chunks else {}
    if pyramid_steps:
        settings.update(amplify_first_chunk=amplify, pyramid_steps=pyramid_steps)
    return tuple(sorted(settings.items()))


def _input_video(options: Options, info: ModelInfo, reader: InputReader):
    """The whole input video: Helios continues it, conditioning on its last whole chunks."""
    video = reader.video(required(options.video, "--video", "clip.mp4"))
    window = window_frames(info.temporal_scale)
    if len(video) < window:
        raise VidgenError(
            f"video '{options.video}' has {len(video)} frames; Helios reads whole chunks of {window}",
            f"pass a video of at least {window} frames",
        )
    return video


def _refuse_cogvideox_options(options: Options) -> None:
    if options.dynamic_cfg:
        raise VidgenError("--dynamic-cfg is a CogVideoX option; Helios keeps guidance fixed", "drop it")
    if options.strength is not None:
        raise VidgenError("Helios has no --strength: it continues --video rather than redoing it", "drop it")


def helios_token_counts(request: Request, info: ModelInfo) -> set[int]:
    """The history's token count and each pyramid stage's chunk token count for this request."""
    # Imported here: the model module imports diffusers (seconds), and the checks run without it.
    from vidgen.families.helios.history import window_sizes
    from vidgen.families.helios.model import history_token_count

    settings = HeliosSettings(**dict(request.settings))
    long, mid, short = window_sizes(settings.history_sizes, settings.keep_first_frame)
    short += settings.keep_first_frame  # the first frame rides in the short term
    rows, columns = request.height // info.spatial_scale, request.width // info.spatial_scale
    patch = (1, info.patch_size, info.patch_size)
    counts = {history_token_count((long, mid, short), rows, columns, patch)}
    for stage in range(info.pyramid_stages):
        shrink = 2 ** (info.pyramid_stages - 1 - stage)
        counts.add(
            settings.chunk_latent_frames * (rows // shrink // patch[1]) * (columns // shrink // patch[2])
        )
    return counts
