"""Helios' options checked into a plan, before any weights load: `vidgen stream`'s, and the Request of
`vidgen t2v/i2v/v2v/batch --model helios-*` (`vidgen.validate.build_request` hands Helios over here).

Helios generates whole chunks of 33 frames (9 latent frames), so a frame count or a duration rounds up
to whole chunks; its pyramid models (Mid, Distilled) sample in stages and need sizes whose latent grid
halves at each stage. Steps: Helios-Base takes `--steps`; a pyramid model takes `--pyramid-steps`
(one count per stage) or `--steps N`, N in every stage.
"""

import math
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from vidgen.errors import VidgenError
from vidgen.io.media import read_image, read_video
from vidgen.model_info import ModelInfo
from vidgen.pipelines.helios_chunks import plan_chunks, window_frames
from vidgen.presets import Preset, load_presets
from vidgen.prompt_schedule import Cue, read_prompt_file, unused_cues
from vidgen.request import Request
from vidgen.sources import parse_model
from vidgen.validate import (
    Options,
    Output,
    Plan,
    _required,
    build_runtime,
    check_mode,
    check_size,
    plan_output,
    resolve_device,
    resolve_model,
    resolve_prompt,
    resolve_seed,
)

STDOUT = "-"


@dataclass(frozen=True)
class StreamOptions(Options):
    """`vidgen stream`'s options: the common ones and Helios' own."""

    seconds: float | None = None
    pyramid_steps: str | None = None  # "2,2,2"
    amplify_first_chunk: bool | None = None
    prompt_file: str | None = None
    interpolate_chunks: int = 0
    json_output: bool = False  # --json: the summary goes to stdout, which -o - needs for the video


@dataclass(frozen=True)
class StreamPlan:
    """A checked Helios plan and what only streaming needs."""

    plan: Plan
    chunks: int  # how many chunks the video takes
    cues: tuple[Cue, ...]  # the prompt schedule; one cue for a single prompt
    interpolate_chunks: int
    prompt_file: str | None = None  # where the cues came from, if from a file

    @property
    def to_stdout(self) -> bool:
        return str(self.plan.output.path) == STDOUT


def prepare_stream(
    options: StreamOptions,
    stdin: TextIO | None = None,
    presets: Mapping[str, Preset] | None = None,
    cache_dir: Path | None = None,
) -> StreamPlan:
    """Check `vidgen stream`'s options against the model's configs; raises VidgenError."""
    presets = load_presets() if presets is None else presets
    notes: list[str] = []
    cues = resolve_cues(options, stdin)
    source = parse_model(options.model, presets)
    seed = resolve_seed(options.seed, notes)
    output = stream_output(options, cues[0].prompt, seed)
    device = resolve_device(options.device)
    model = resolve_model(source, presets, cache_dir)
    if model.info.family != "helios":
        raise VidgenError(
            f"'{options.model}' is a {model.info.family} model; vidgen stream runs Helios models",
            "use `vidgen t2v` with it, or a Helios preset such as helios-distilled or tiny-helios",
        )
    check_mode(options.mode, model.info, options.model, presets)
    request = helios_request(options, cues[0].prompt, seed, model.info, model.preset, notes)
    runtime = build_runtime(options, model.preset, device, notes)
    chunks = chunk_count(request.frames, model.info)
    for cue in unused_cues(cues, chunks):
        notes.append(
            f"the prompt for chunk {cue.chunk} is past the last chunk ({chunks - 1}); it is not used"
        )
    inputs = {name: path for name in ("image", "video") if (path := getattr(options, name))}
    plan = Plan(request, runtime, source, model.preset, output, inputs, tuple(notes))
    return StreamPlan(plan, chunks, cues, options.interpolate_chunks, options.prompt_file)


def stream_mode(image: str | None, video: str | None) -> str:
    """What a stream starts from: nothing (t2v), an image (i2v) or a video it continues (v2v)."""
    if image and video:
        raise VidgenError("--image and --video both given", "a stream starts from one of them, or from text")
    return "i2v" if image else "v2v" if video else "t2v"


def resolve_cues(options: StreamOptions, stdin: TextIO | None) -> tuple[Cue, ...]:
    """The prompt schedule: --prompt-file, or the one prompt for every chunk."""
    if options.interpolate_chunks < 0:
        raise VidgenError("--interpolate-chunks is negative", "pass 0 (switch at once) or more chunks")
    if options.prompt_file is None:
        return (Cue(0, resolve_prompt(options.prompt_argument, options.prompt, stdin)),)
    if options.prompt is not None or options.prompt_argument is not None:
        raise VidgenError(
            "a prompt and --prompt-file given",
            "put every prompt in the file (chunk 0 first), or drop the file",
        )
    return read_prompt_file(options.prompt_file)


def stream_output(options: StreamOptions, prompt: str, seed: int) -> Output:
    """Where the stream goes: an MP4 file or PNG folder (refusing to replace one), or stdout."""
    if options.output != STDOUT:
        output = plan_output(options.output, options.format, options.overwrite, prompt, seed)
        if output.format == "gif":
            raise VidgenError(
                "a GIF cannot be streamed (it is written in one piece at the end)",
                "stream to .mp4 or --format png, or make a GIF with `vidgen t2v`",
            )
        return output
    if options.format not in (None, "mp4"):
        raise VidgenError(
            f"-o - writes an MP4 stream, not {options.format}", "drop --format, or name an output"
        )
    if options.json_output:
        raise VidgenError("--json and -o - both want stdout", "drop --json; the video carries its settings")
    if sys.stdout.isatty():
        raise VidgenError("-o - would write video to the terminal", "pipe it into a player: ... -o - | mpv -")
    return Output(Path(STDOUT), "mp4")


def helios_request(
    options: Options, prompt: str, seed: int, info: ModelInfo, preset: Preset, notes: list[str]
) -> Request:
    """The checked Request, Helios' sampling settings in `Request.settings`."""
    _refuse_cogvideox_options(options)
    height, width = options.height or preset.height, options.width or preset.width
    check_size(height, width, info, options.model)
    fps = options.fps or preset.fps
    frames = output_frames(_requested_frames(options, preset, fps), info, fps, notes)
    pyramid_steps = _pyramid_steps(options, info, preset)
    image = read_image(_required(options.image, "--image", "photo.png")) if options.mode == "i2v" else None
    video = _input_video(options, info) if options.mode == "v2v" else None
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
        settings=_settings(options, info, preset, pyramid_steps, notes),
    )


def chunk_count(frames: int, info: ModelInfo) -> int:
    """Chunks for `frames` frames, rounding up (as the chunk generator plans them)."""
    return plan_chunks(frames, info.temporal_scale).chunks


def output_frames(requested: int, info: ModelInfo, fps: int, notes: list[str]) -> int:
    """The frames a video of `requested` frames has: whole chunks, cut to 4k+1 as diffusers does."""
    plan = plan_chunks(requested, info.temporal_scale)
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
    options: Options, info: ModelInfo, preset: Preset, pyramid_steps: tuple[int, ...], notes: list[str]
) -> tuple[tuple[str, object], ...]:
    """HeliosSettings fields that differ by model and option, as sorted pairs."""
    amplify = getattr(options, "amplify_first_chunk", None)
    amplify = preset.amplify_first_chunk if amplify is None else amplify
    if amplify and info.architecture != "helios-distilled":
        notes.append("only Helios-Distilled's scheduler amplifies the first chunk; it changes nothing here")
    if not pyramid_steps:
        return ()
    return (("amplify_first_chunk", amplify), ("pyramid_steps", pyramid_steps))


def _input_video(options: Options, info: ModelInfo):
    """The whole input video: Helios continues it, conditioning on its last whole chunks."""
    video = read_video(_required(options.video, "--video", "clip.mp4"))
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
