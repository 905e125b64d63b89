"""`vidgen stream`'s options checked into a plan: the prompt schedule, the output (a growing MP4, a PNG
folder or stdout) and the Helios request, before any weights load.
"""

import sys
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TextIO

from vidgen.app.prepare import resolve_model
from vidgen.core.errors import VidgenError
from vidgen.core.prompt_schedule import Cue, read_prompt_file, unused_cues
from vidgen.runtime.ranks import Rank
from vidgen.validate.common import (
    Options,
    Output,
    Plan,
    check_mode,
    check_text,
    plan_output,
    resolve_prompt,
    resolve_seed,
)
from vidgen.validate.limits import check_frame_count, check_numbers
from vidgen.validate.memory import check_fits
from vidgen.validate.runtime import (
    build_runtime,
    check_split,
    join_ranks,
    parallel_runtime,
    resolve_device,
    with_loras,
)
from vidgen.weights.presets import Preset, load_presets
from vidgen.weights.sources import parse_model

STDOUT = "-"


@dataclass(frozen=True)
class StreamOptions(Options):
    """`vidgen stream`'s options: the common ones and Helios' own."""

    seconds: float | None = None
    pyramid_steps: str | None = None  # "2,2,2"
    amplify_first_chunk: bool | None = None
    prompt_file: str | None = None
    interpolate_chunks: int = 0
    live: bool = False  # --live: prompts typed on stdin steer the chunks not started yet
    whole_chunks: bool = False  # --whole-chunks: the last chunk is not cut to 4k+1 frames
    json_output: bool = False  # --json: the summary goes to stdout, which -o - needs for the video


@dataclass(frozen=True)
class StreamPlan:
    """A checked Helios plan and what only streaming needs."""

    plan: Plan
    chunks: int  # how many chunks the video takes
    cues: tuple[Cue, ...]  # the prompt schedule; one cue for a single prompt
    interpolate_chunks: int
    prompt_file: str | None = None  # where the cues came from, if from a file
    live: bool = False  # prompts typed on stdin join the schedule while it runs

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
    rank = Rank.from_env()
    device = rank.device(resolve_device(options.device))
    join_ranks(rank, device, (options, cues))  # the prompts too: stdin may reach one rank only
    model = resolve_model(source, presets, cache_dir, options.preset)
    notes.extend(model.notes)
    if not model.family.streams:
        raise VidgenError(
            f"'{options.model}' is a {model.family.title} model; vidgen stream runs models that generate "
            "chunk by chunk (Helios)",
            "use `vidgen t2v` with it, or a Helios preset such as helios-distilled or tiny-helios",
        )
    check_mode(options.mode, model.info, options.model, presets)
    check_numbers(options)
    check_text(options.negative_prompt, "--negative-prompt")
    request = model.family.build_request(options, cues[0].prompt, seed, model.preset, model.info, notes)
    check_frame_count(request.frames)
    runtime = build_runtime(options, model.preset, device, notes)
    runtime = with_loras(runtime, options.lora, model, notes)
    runtime = parallel_runtime(options, runtime, model.info.attention_heads, request.guidance > 1, rank)
    if options.live and runtime.parallel.world_size > 1:
        # Each rank would read its own standard input, so their prompt schedules could differ.
        raise VidgenError(
            "--live cannot run under torchrun: every rank would read its own standard input",
            "run --live in one process, or give the prompts with --prompt-file",
        )
    runtime = replace(runtime, parallel=check_split(runtime.parallel, request, model.info, model.family))
    check_fits(request, model.info, model.configs, runtime)
    chunks = model.family.chunk_count(request.frames, model.info)
    for cue in unused_cues(cues, chunks):
        notes.append(
            f"the prompt for chunk {cue.chunk} is past the last chunk ({chunks - 1}); it is not used"
        )
    inputs = {name: path for name in ("image", "video") if (path := getattr(options, name))}
    plan = Plan(request, runtime, source, model.preset, output, inputs, tuple(notes))
    return StreamPlan(plan, chunks, cues, options.interpolate_chunks, options.prompt_file, options.live)


def stream_mode(image: str | None, video: str | None) -> str:
    """What a stream starts from: nothing (t2v), an image (i2v) or a video it continues (v2v)."""
    if image and video:
        raise VidgenError("--image and --video both given", "a stream starts from one of them, or from text")
    return "i2v" if image else "v2v" if video else "t2v"


def resolve_cues(options: StreamOptions, stdin: TextIO | None) -> tuple[Cue, ...]:
    """The prompt schedule: --prompt-file, or the one prompt for every chunk."""
    if options.interpolate_chunks < 0:
        raise VidgenError("--interpolate-chunks is negative", "pass 0 (switch at once) or more chunks")
    if options.live and STDOUT in (options.prompt_argument, options.prompt, options.prompt_file):
        raise VidgenError(
            "--live reads new prompts from stdin, so the first prompt cannot come from it too",
            "give the first prompt as an argument, with --prompt or in --prompt-file FILE",
        )
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
