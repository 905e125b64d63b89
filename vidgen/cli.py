"""The `vidgen` command: parse options, call one function, print. Nothing else lives here."""

import json
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from enum import Enum
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Column, Table
from typer.core import TyperArgument, TyperCommand, TyperGroup, TyperOption

from vidgen import __version__
from vidgen.core.errors import INTERRUPTED, RANK_LOST, VidgenError
from vidgen.core.progress import Silent
from vidgen.ui import console
from vidgen.ui.signals import exit_code, stop_signals_as_interrupts
from vidgen.weights.presets import close_names, find_preset, load_presets

if TYPE_CHECKING:  # torch loads only when a command runs
    from vidgen.app.prepare_stream import StreamPlan
    from vidgen.app.stream import StreamOutcome
    from vidgen.weights.presets import Preset

EXIT_CODES = (
    "Exit codes: 0 done; 1 the output could not be written (a full disk, a file-size limit, a failed "
    "encoder; the line says which); 2 a mistake in the options or inputs (nothing was generated); "
    "3 out of device memory; 130 interrupted (Ctrl-C), 143 by SIGTERM, 129 by SIGHUP (128 + the signal's "
    "number; each stops as Ctrl-C does); 141 the program reading `vidgen stream -o -` closed the pipe. "
    "Partial outputs are never left under the output's name (`vidgen stream` keeps every finished chunk); "
    "hidden partial files that a killed run (SIGKILL) left are removed the next time the same output is "
    "written."
)


def _flags_take_no_value(params: list) -> None:
    """Typer's help shows a <bool> type beside a flag (--version <bool>), as if it took a value."""
    for param in params:
        if isinstance(param, TyperOption) and param.is_flag and param.metavar is None:
            param.metavar = ""  # the type column stays empty


class Group(TyperGroup):
    """A command group whose help shows its flags as flags."""

    def get_params(self, ctx: typer.Context) -> list:
        params = super().get_params(ctx)  # --help is made here
        _flags_take_no_value(params)
        return params


class Command(TyperCommand):
    """A command whose help shows its flags as flags and its usage line as command lines read:
    `vidgen batch [OPTIONS] JOBS`, not Typer's `{JOBS}`."""

    def get_params(self, ctx: typer.Context) -> list:
        params = super().get_params(ctx)
        _flags_take_no_value(params)
        return params

    def collect_usage_pieces(self, ctx: typer.Context) -> list[str]:
        arguments = [param for param in self.get_params(ctx) if isinstance(param, TyperArgument)]
        return [self.options_metavar or "", *(_usage_name(argument) for argument in arguments)]


def _usage_name(argument: TyperArgument) -> str:
    """JOBS when required, [PROMPT] when not, as click and most command lines write them."""
    name = argument.metavar or (argument.name or "").upper()
    name = name if argument.required else f"[{name}]"
    return name + ("..." if argument.nargs != 1 else "")


app = typer.Typer(
    name="vidgen",
    help="Generate videos with CogVideoX and Helios on your own GPU.",
    epilog=EXIT_CODES,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    cls=Group,
)
models_app = typer.Typer(help="List the model presets, or show one's settings.", cls=Group)
app.add_typer(models_app, name="models")


class DType(str, Enum):
    fp32 = "fp32"
    fp16 = "fp16"
    bf16 = "bf16"


class Offload(str, Enum):
    auto = "auto"
    none = "none"
    model = "model"
    group = "group"
    sequential = "sequential"


class Quantize(str, Enum):
    none = "none"
    fp8 = "fp8"
    int8 = "int8"
    fp8_storage = "fp8-storage"


class Attention(str, Enum):  # validate.runtime.ATTENTION_CHOICES, spelled out so --help loads no torch
    auto = "auto"
    sdpa = "sdpa"
    cudnn = "cudnn"
    flash = "flash"
    flash3 = "flash3"
    sage = "sage"
    flex = "flex"
    xformers = "xformers"


class Cache(str, Enum):
    none = "none"
    first_block = "first-block"
    mag = "mag"
    taylorseer = "taylorseer"


class Parallel(str, Enum):  # vidgen.runtime.parallel.PARALLEL_CHOICES
    auto = "auto"
    ulysses = "ulysses"
    ring = "ring"
    cfg = "cfg"


class Format(str, Enum):
    mp4 = "mp4"
    gif = "gif"
    png = "png"


class StreamFormat(str, Enum):  # a GIF is written in one piece, so it cannot grow as a stream does
    mp4 = "mp4"
    png = "png"


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"vidgen {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: bool = typer.Option(
        False, "--version", callback=_print_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Generate videos with CogVideoX and Helios on your own GPU."""


# Options shared by t2v, i2v and v2v. None means "not given": the preset (or the model) decides.
PROMPT_ARGUMENT = typer.Argument(
    None, metavar="PROMPT", help="What to generate; - reads stdin.", show_default=False
)
MODEL = typer.Option(
    ..., "--model", "-m", help="A preset (see `vidgen models`), a diffusers folder or a hub repo id."
)
PRESET = typer.Option(
    None,
    "--preset",
    help="Whose settings (sampler, steps, guidance, size) a folder or repo takes: a preset name, or "
    "none for the folder's own scheduler.",
    show_default="the preset the model is shaped like",
)
PROMPT = typer.Option(None, "--prompt", "-p", help="The prompt, instead of PROMPT.", show_default=False)
NEGATIVE_PROMPT = typer.Option("", "--negative-prompt", "-n", help="What to avoid.")
SEED = typer.Option(None, "--seed", min=0, help="Random seed.", show_default="random, printed")
STEPS = typer.Option(
    None,
    "--steps",
    min=1,
    max=1000,
    help="Denoising steps (Helios-Mid/Distilled: per pyramid stage).",
    show_default="the preset's",
)
GUIDANCE = typer.Option(
    None,
    "--guidance",
    min=0.0,
    help="Classifier-free guidance scale.",
    show_default="the preset's",
)
DYNAMIC_CFG = typer.Option(
    None,
    "--dynamic-cfg/--no-dynamic-cfg",
    help="Ramp guidance up over the steps.",
    show_default="the preset's",
)
HEIGHT = typer.Option(
    None,
    "--height",
    min=16,
    help="Height in pixels, a multiple of 16.",
    show_default="the preset's",
)
WIDTH = typer.Option(
    None,
    "--width",
    min=16,
    help="Width in pixels, a multiple of 16.",
    show_default="the preset's",
)
FRAMES = typer.Option(
    None,
    "--frames",
    min=1,
    help="Frame count: 8k+1 for CogVideoX (e.g. 49, 81); Helios rounds up to whole 33-frame chunks.",
    show_default="the preset's",
)
FPS = typer.Option(
    None,
    "--fps",
    min=1,
    max=240,
    help="Frames per second of the output.",
    show_default="the preset's",
)
DEVICE = typer.Option(None, "--device", help="cpu, cuda, cuda:N.", show_default="cuda if available, else cpu")
DTYPE = typer.Option(
    None,
    "--dtype",
    help="Weights and compute precision.",
    show_default="the preset's; fp32 on CPU for fp16 models",
)
OFFLOAD = typer.Option(
    None,
    "--offload",
    show_default="the preset's, else auto",
    help="How models share the GPU: auto picks the fastest plan that fits its free memory; none keeps "
    "all resident; model brings each for its stage; group streams blocks; sequential streams layers.",
)
QUANTIZE = typer.Option(
    None,
    "--quantize",
    show_default="the preset's, else none",
    # escaped: Typer reads help as Rich markup, in which [fast] is a style tag and vanishes
    help=escape(
        "Transformer weights in fewer bytes: fp8 (GPUs with fp8 matmuls) and int8 need torchao "
        '(pip install "vidgen[fast]"); fp8-storage runs anywhere.'
    ),
)
VAE_TILING = typer.Option(
    None,
    "--vae-tiling/--no-vae-tiling",
    help="Decode in tiles to save memory.",
    show_default="the preset's",
)
ATTENTION = typer.Option(
    None,
    "--attention",
    help="Attention kernel (diffusers' backends): auto picks the fastest one installed for the device and "
    "dtype; sdpa is PyTorch's.",
    show_default="the preset's: auto",
)
COMPILE = typer.Option(
    False, "--compile", help="torch.compile the transformer's blocks: slower start, faster steps."
)
CACHE = typer.Option(
    None,
    "--cache",
    show_default="the preset's, else none",
    help="Skip transformer work between steps when little changes (diffusers' step caches): "
    "first-block, mag or taylorseer; frames change slightly. mag measures its ratios on the first run "
    "with a model and schedule (skipping nothing) and skips on later ones.",
)
MAG_RATIOS = typer.Option(
    None,
    "--mag-ratios",
    metavar="measure|FILE",
    show_default="the ratios stored for the model",
    help="With --cache mag: 'measure' ignores the stored ratios (measuring as a first run does), FILE "
    "uses the ratios in a ratios file. A sidecar's command says which, so that it replays the same frames.",
)
LORA = typer.Option(
    None,
    "--lora",
    help="A LoRA to fuse into the transformer: PATH_OR_REPO[:SCALE] (a .safetensors file, a folder holding "
    "pytorch_lora_weights.safetensors, or a hub repo id); repeat it to stack LoRAs.",
    show_default="the preset's, else none",
)
PARALLEL = typer.Option(
    None,
    "--parallel",
    help="Under torchrun, how the ranks share one video: ulysses (all-to-all over attention heads), ring "
    "(any number of ranks; CUDA), cfg (guidance branches on different ranks, then the rest), auto "
    "(ulysses when the heads divide by the ranks, else ring).",
    show_default="auto under torchrun",
)
OUTPUT = typer.Option(
    None,
    "--output",
    "-o",
    help="Output file (.mp4, .gif) or folder (png).",
    show_default="PROMPT-WORDS-SEED.mp4 here",
)
FORMAT = typer.Option(
    None,
    "--format",
    help="mp4, gif, or png (a folder of frame_00000.png...).",
    show_default="from -o, else mp4",
)
OVERWRITE = typer.Option(False, "--overwrite", help="Replace an existing output and its .json sidecar.")
QUIET = typer.Option(
    False, "--quiet", "-q", help="No progress or notes on stderr (warnings and errors still show)."
)
VERBOSE = typer.Option(
    False, "--verbose", "-v", help="Also show the libraries' own warnings (torch, diffusers, transformers)."
)
JSON = typer.Option(False, "--json", help="Print one JSON summary on stdout, nothing else.")
IMAGE = typer.Option(None, "--image", "-i", help="The image to animate.", show_default=False)
VIDEO = typer.Option(None, "--video", help="The video to transform.", show_default=False)
STRENGTH = typer.Option(
    None,
    "--strength",
    min=0.0,
    max=1.0,
    help="How much to change the video.",
    show_default="0.8",
)

OUTPUT_HELP = "Writes the video and, beside it, OUTPUT.json with every setting (the .mp4 carries it too)."


@app.command(epilog=OUTPUT_HELP, cls=Command)
def t2v(
    prompt_argument: str | None = PROMPT_ARGUMENT,
    model: str = MODEL,
    preset: str | None = PRESET,
    prompt: str | None = PROMPT,
    negative_prompt: str = NEGATIVE_PROMPT,
    seed: int | None = SEED,
    steps: int | None = STEPS,
    guidance: float | None = GUIDANCE,
    dynamic_cfg: bool | None = DYNAMIC_CFG,
    height: int | None = HEIGHT,
    width: int | None = WIDTH,
    frames: int | None = FRAMES,
    fps: int | None = FPS,
    device: str | None = DEVICE,
    dtype: DType | None = DTYPE,
    offload: Offload | None = OFFLOAD,
    quantize: Quantize | None = QUANTIZE,
    vae_tiling: bool | None = VAE_TILING,
    attention: Attention | None = ATTENTION,
    compile: bool = COMPILE,
    cache: Cache | None = CACHE,
    mag_ratios: str | None = MAG_RATIOS,
    lora: list[str] | None = LORA,
    parallel: Parallel | None = PARALLEL,
    output: str | None = OUTPUT,
    format: Format | None = FORMAT,
    overwrite: bool = OVERWRITE,
    quiet: bool = QUIET,
    verbose: bool = VERBOSE,
    json_output: bool = JSON,
) -> None:
    """Text to video."""
    _generate("t2v", locals())


@app.command(epilog=OUTPUT_HELP, cls=Command)
def i2v(
    prompt_argument: str | None = PROMPT_ARGUMENT,
    model: str = MODEL,
    preset: str | None = PRESET,
    image: str | None = IMAGE,
    prompt: str | None = PROMPT,
    negative_prompt: str = NEGATIVE_PROMPT,
    seed: int | None = SEED,
    steps: int | None = STEPS,
    guidance: float | None = GUIDANCE,
    dynamic_cfg: bool | None = DYNAMIC_CFG,
    height: int | None = HEIGHT,
    width: int | None = WIDTH,
    frames: int | None = FRAMES,
    fps: int | None = FPS,
    device: str | None = DEVICE,
    dtype: DType | None = DTYPE,
    offload: Offload | None = OFFLOAD,
    quantize: Quantize | None = QUANTIZE,
    vae_tiling: bool | None = VAE_TILING,
    attention: Attention | None = ATTENTION,
    compile: bool = COMPILE,
    cache: Cache | None = CACHE,
    mag_ratios: str | None = MAG_RATIOS,
    lora: list[str] | None = LORA,
    parallel: Parallel | None = PARALLEL,
    output: str | None = OUTPUT,
    format: Format | None = FORMAT,
    overwrite: bool = OVERWRITE,
    quiet: bool = QUIET,
    verbose: bool = VERBOSE,
    json_output: bool = JSON,
) -> None:
    """Image to video: animate --image as the prompt describes."""
    _generate("i2v", locals())


@app.command(epilog=OUTPUT_HELP, cls=Command)
def v2v(
    prompt_argument: str | None = PROMPT_ARGUMENT,
    model: str = MODEL,
    preset: str | None = PRESET,
    video: str | None = VIDEO,
    strength: float | None = STRENGTH,
    prompt: str | None = PROMPT,
    negative_prompt: str = NEGATIVE_PROMPT,
    seed: int | None = SEED,
    steps: int | None = STEPS,
    guidance: float | None = GUIDANCE,
    dynamic_cfg: bool | None = DYNAMIC_CFG,
    height: int | None = HEIGHT,
    width: int | None = WIDTH,
    frames: int | None = FRAMES,
    fps: int | None = FPS,
    device: str | None = DEVICE,
    dtype: DType | None = DTYPE,
    offload: Offload | None = OFFLOAD,
    quantize: Quantize | None = QUANTIZE,
    vae_tiling: bool | None = VAE_TILING,
    attention: Attention | None = ATTENTION,
    compile: bool = COMPILE,
    cache: Cache | None = CACHE,
    mag_ratios: str | None = MAG_RATIOS,
    lora: list[str] | None = LORA,
    parallel: Parallel | None = PARALLEL,
    output: str | None = OUTPUT,
    format: Format | None = FORMAT,
    overwrite: bool = OVERWRITE,
    quiet: bool = QUIET,
    verbose: bool = VERBOSE,
    json_output: bool = JSON,
) -> None:
    """Video to video: redo --video as the prompt describes (its first frames, resized); Helios
    continues --video instead."""
    _generate("v2v", locals())


STREAM_HELP = (
    "Writes OUTPUT while it grows: a fragmented MP4 that plays after every chunk (try `mpv OUTPUT`), or "
    "a folder of PNG frames (--format png); with -o - the MP4 goes to stdout, e.g. `vidgen stream ... -o "
    "- | mpv -`. OUTPUT.json beside it records every setting and how the stream ended. Ctrl-C stops at "
    "once and keeps every finished chunk (exit code 130); when the program reading -o - closes the pipe, "
    "the stream stops with one line (exit code 141). A prompt file holds one prompt per line (one "
    "chunk each), a CSV with header chunk,prompt, or a JSON list of {chunk, prompt}; the last prompt "
    "holds to the end. With --live, each line typed on stdin is the prompt from the next chunk on "
    "(blended over --interpolate-chunks); /quit or the end of input ends the stream after the chunk being "
    "made, e.g. `vidgen stream --live ... -o - | mpv -`. OUTPUT.prompts.csv keeps the prompts as they "
    "came, and the sidecar's command replays them."
)


@app.command(epilog=STREAM_HELP, cls=Command)
def stream(
    prompt_argument: str | None = PROMPT_ARGUMENT,
    model: str = MODEL,
    preset: str | None = PRESET,
    prompt: str | None = PROMPT,
    prompt_file: str | None = typer.Option(
        None, "--prompt-file", help="Prompts by chunk, for a story (see below).", show_default=False
    ),
    interpolate_chunks: int = typer.Option(
        0, "--interpolate-chunks", min=0, help="Blend into each new prompt over this many chunks."
    ),
    live: bool = typer.Option(
        False, "--live", help="Read new prompts from stdin while it runs, one a line (see below)."
    ),
    image: str | None = typer.Option(
        None, "--image", "-i", help="Start from this image.", show_default=False
    ),
    video: str | None = typer.Option(None, "--video", help="Continue this video.", show_default=False),
    negative_prompt: str = NEGATIVE_PROMPT,
    seed: int | None = SEED,
    steps: int | None = STEPS,
    pyramid_steps: str | None = typer.Option(
        None, "--pyramid-steps", help="Steps per pyramid stage, e.g. 2,2,2.", show_default="the preset's"
    ),
    guidance: float | None = GUIDANCE,
    amplify_first_chunk: bool | None = typer.Option(
        None,
        "--amplify-first-chunk/--no-amplify-first-chunk",
        help="Twice the steps for the first chunk (Helios-Distilled).",
        show_default="the preset's",
    ),
    height: int | None = HEIGHT,
    width: int | None = WIDTH,
    frames: int | None = typer.Option(
        None,
        "--frames",
        min=1,
        help="Frames, rounded up to whole 33-frame chunks, then cut to 4k+1 as diffusers does.",
        show_default="the preset's",
    ),
    whole_chunks: bool = typer.Option(
        False,
        "--whole-chunks",
        help="Keep the last chunk whole (33 frames a chunk, not cut to 4k+1): what a stream ended early "
        "holds, and its sidecar's command replays.",
    ),
    seconds: float | None = typer.Option(
        None, "--seconds", help="Length in seconds, instead of --frames.", show_default=False
    ),
    fps: int | None = FPS,
    device: str | None = DEVICE,
    dtype: DType | None = DTYPE,
    offload: Offload | None = OFFLOAD,
    quantize: Quantize | None = QUANTIZE,
    vae_tiling: bool | None = VAE_TILING,
    attention: Attention | None = ATTENTION,
    compile: bool = COMPILE,
    cache: Cache | None = CACHE,
    mag_ratios: str | None = MAG_RATIOS,
    lora: list[str] | None = LORA,
    parallel: Parallel | None = PARALLEL,
    output: str | None = typer.Option(
        None,
        "--output",
        "-o",
        help="Output .mp4, folder (png), or - for stdout.",
        show_default="PROMPT-WORDS-SEED.mp4",
    ),
    format: StreamFormat | None = typer.Option(
        None, "--format", help="mp4 or png.", show_default="from -o, else mp4"
    ),
    overwrite: bool = OVERWRITE,
    quiet: bool = QUIET,
    verbose: bool = VERBOSE,
    json_output: bool = JSON,
) -> None:
    """A long Helios video, each 33-frame chunk written as soon as it is generated."""
    values = {name: value.value if isinstance(value, Enum) else value for name, value in locals().items()}
    console.quiet_libraries(values.pop("verbose"))  # before the imports below: they log on import
    from vidgen.app.prepare_stream import StreamOptions, prepare_stream, stream_mode
    from vidgen.app.stream import stream_video  # torch and the pipelines load only when a command runs
    from vidgen.runtime.parallel import leave, outcome_speaker
    from vidgen.ui.live_prompts import LineReader
    from vidgen.ui.stream_progress import SilentStream, StreamProgress

    quiet = values.pop("quiet")
    with _reported_errors():
        options = StreamOptions(mode=stream_mode(image, video), **values)
        plan = prepare_stream(options, stdin=sys.stdin)
        quiet = quiet or not outcome_speaker()  # under torchrun rank 0 alone reports
        for line in () if quiet else plan.plan.notes:
            console.note(line)
        reader = LineReader(sys.stdin) if plan.live else None
        with nullcontext(SilentStream()) if quiet else StreamProgress(plan.chunks) as progress:
            outcome = stream_video(plan, progress, live=reader)
    speaker = outcome_speaker()
    leave()
    if not speaker:
        return
    if json_output:
        typer.echo(json.dumps(outcome.summary))
    else:
        typer.echo(_streamed(plan, outcome), err=plan.to_stdout)  # stdout may have carried the video


def _streamed(plan: "StreamPlan", outcome: "StreamOutcome") -> str:
    """The line that ends a stream: where it went, how long, how fast."""
    request, where = plan.plan.request, "stdout" if plan.to_stdout else plan.plan.output.path
    chunks = f"{outcome.chunks} chunk{'s' * (outcome.chunks != 1)}"
    size = f"{request.width}x{request.height}, {request.fps} fps, seed {request.seed}"
    rate = outcome.throughput.describe()
    settings = "" if outcome.sidecar is None else f"; settings in {outcome.sidecar}"
    return f"wrote {where} ({outcome.frames} frames in {chunks}, {size}; {rate}){settings}"


def _generate(mode: str, values: dict[str, Any]) -> None:
    """Check, generate, write, then print the result."""
    console.quiet_libraries(values.pop("verbose"))  # before the imports below: they log on import
    from vidgen.app.prepare import prepare
    from vidgen.app.run import run  # torch and the pipelines load only when a command runs
    from vidgen.runtime.parallel import leave, outcome_speaker
    from vidgen.validate.common import Options

    values = {name: value.value if isinstance(value, Enum) else value for name, value in values.items()}
    quiet, json_output = values.pop("quiet"), values.pop("json_output")
    with _reported_errors():
        plan = prepare(Options(mode=mode, **values), stdin=sys.stdin)
        quiet = quiet or not outcome_speaker()
        for line in () if quiet else plan.notes:
            console.note(line)
        with nullcontext(Silent()) if quiet else console.ConsoleProgress() as progress:
            outcome = run(plan, progress)
    speaker = outcome_speaker()
    leave()
    if not speaker:  # another torchrun rank: rank 0 wrote the video and speaks for it
        return
    for line in outcome.warnings:
        console.warning(line)
    if json_output:
        typer.echo(json.dumps(outcome.summary))
        return
    request, frames = plan.request, outcome.summary["output"]["frames"]
    typer.echo(
        f"wrote {outcome.output} ({frames} frames, {request.width}x{request.height}, {request.fps} fps, "
        f"seed {request.seed}); settings in {outcome.sidecar}"
    )


class Mode(str, Enum):
    t2v = "t2v"
    i2v = "i2v"
    v2v = "v2v"


BATCH_HELP = (
    "JOBS holds one JSON object per line, or CSV under a header row. Its keys are the long option names "
    "(prompt, negative_prompt, seed, steps, guidance, dynamic_cfg, height, width, frames, fps, image, "
    "video, strength, format, mode, lora) and name; they override the options given here (lora: what "
    "--lora takes, or a list of them). Relative image, video and lora paths are relative to the job "
    "file. Each video goes to OUTDIR/NAME.mp4 (NAME: the job's line number, 00007, unless set) with "
    "NAME.mp4.json beside it, and OUTDIR/manifest.jsonl "
    "records every job. The same command again skips finished jobs and runs the rest. Under torchrun "
    "each rank runs its share and writes manifest.rankN.jsonl. Exit codes: 0 every job done; 1 some "
    "jobs failed (the manifest says why); 2 a mistake in the options, or with --dry-run in JOBS, or "
    "OUTDIR in use by another batch; "
    "3 out of memory loading the model; 130 interrupted."
)


@app.command(epilog=BATCH_HELP, cls=Command)
def batch(
    jobs: str = typer.Argument(..., metavar="JOBS", help="A JSONL or CSV job file; - reads stdin."),
    outdir: str = typer.Option(..., "--output", "-o", help="The folder for the videos and the manifest."),
    model: str = MODEL,
    preset: str | None = PRESET,
    mode: Mode | None = typer.Option(
        None, "--mode", help="The jobs' mode, unless a job sets one.", show_default="the model's first"
    ),
    prompt: str | None = typer.Option(
        None, "--prompt", "-p", help="The prompt of jobs without one.", show_default=False
    ),
    negative_prompt: str = NEGATIVE_PROMPT,
    seed: int | None = SEED,
    steps: int | None = STEPS,
    guidance: float | None = GUIDANCE,
    dynamic_cfg: bool | None = DYNAMIC_CFG,
    height: int | None = HEIGHT,
    width: int | None = WIDTH,
    frames: int | None = FRAMES,
    fps: int | None = FPS,
    image: str | None = IMAGE,
    video: str | None = VIDEO,
    strength: float | None = STRENGTH,
    device: str | None = DEVICE,
    dtype: DType | None = DTYPE,
    offload: Offload | None = OFFLOAD,
    quantize: Quantize | None = QUANTIZE,
    vae_tiling: bool | None = VAE_TILING,
    attention: Attention | None = ATTENTION,
    compile: bool = COMPILE,
    cache: Cache | None = CACHE,
    lora: list[str] | None = LORA,
    format: Format | None = typer.Option(None, "--format", help="mp4, gif, or png.", show_default="mp4"),
    dry_run: bool = typer.Option(
        False, "--dry-run", help="Check every job and stop; nothing loads or is written."
    ),
    overwrite: bool = typer.Option(
        False, "--overwrite", help="Run every job again, replacing earlier outputs."
    ),
    quiet: bool = QUIET,
    verbose: bool = VERBOSE,
    json_output: bool = JSON,
) -> None:
    """Run many jobs from a JSONL or CSV file with the model loaded once; running it again resumes."""
    values = {name: value.value if isinstance(value, Enum) else value for name, value in locals().items()}
    from vidgen.app.batch import BatchOptions, run_batch  # torch loads only when a command runs

    console.route_library_warnings(values.pop("verbose"))  # the libraries load only if a job runs

    flags = {name: values.pop(name) for name in ("jobs", "outdir", "mode", "dry_run", "overwrite", "quiet")}
    json_output = values.pop("json_output")
    with _reported_errors():
        report = run_batch(BatchOptions(defaults=values, **flags), stdin=sys.stdin)
    if not report.speaks:  # another rank; rank 0 reports for the whole batch
        return
    typer.echo(json.dumps(report.as_json()) if json_output else report.describe())
    if report.failed and not report.dry_run:
        console.error(report.failure_hint())
    raise typer.Exit(report.exit_code)


@contextmanager
def _reported_errors() -> Iterator[None]:
    """A user mistake or Ctrl-C (or SIGTERM, SIGHUP) ends in one line on stderr and its exit code, not a
    traceback."""
    with stop_signals_as_interrupts() as received:  # SIGTERM and SIGHUP end the command as Ctrl-C does
        try:
            yield
        except VidgenError as error:
            from vidgen.runtime.ranks import left_to_rank_zero

            if not left_to_rank_zero():  # under torchrun, rank 0 prints what every rank found
                console.error(str(error))
            raise typer.Exit(exit_code(error.exit_code, received)) from None
        except KeyboardInterrupt:
            console.error("interrupted; no output was written")
            raise typer.Exit(exit_code(INTERRUPTED, received)) from None
        except Exception as error:
            from vidgen.runtime.ranks import lost_peer

            line = lost_peer(error)
            if line is None:  # a bug: its traceback
                raise
            # torchrun stops this rank too: a SIGTERM now must not cut the line short (until the block ends)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            console.error(line)
            raise typer.Exit(RANK_LOST) from None


@app.command(cls=Command)
def download(
    model: str = typer.Argument(
        ..., metavar="MODEL", help="A preset (see `vidgen models`) or a hub repo id."
    ),
    dry_run: bool = typer.Option(False, "--dry-run", help="List the files and sizes; download nothing."),
) -> None:
    """Download a model's weights into the Hugging Face cache (HF_HUB_CACHE or HF_HOME), then verify them.

    Only the files vidgen reads (safetensors, configs, tokenizer). Files already cached are kept; an
    interrupted download resumes; a damaged file is fetched again."""
    from vidgen.families import registry
    from vidgen.weights import download as downloads  # huggingface_hub loads only when a command runs
    from vidgen.weights.download_progress import DownloadProgress
    from vidgen.weights.sources import hub_repo

    command = f"vidgen download {model}"
    with _reported_errors():
        repo_id = hub_repo(model)
        if repo_id is None:
            typer.echo(
                f"{model} is a tiny model, built offline on first use (in seconds): nothing to download. "
                f"Run it directly: vidgen t2v --model {model} ..."
            )
            return
        if dry_run:
            typer.echo("\n".join(downloads.dry_run(repo_id, command, registry.WEIGHTS.classes_for)))
            return
        with DownloadProgress() as progress:
            snapshot = downloads.download(repo_id, command, progress, registry.WEIGHTS.classes_for)
    typer.echo(f"{repo_id}: complete and verified in {snapshot}")


@models_app.callback(invoke_without_command=True)
def models(context: typer.Context) -> None:
    """List the model presets, and how much of each the Hugging Face cache holds."""
    if context.invoked_subcommand is not None:
        return
    # Names and sources are what users copy from this table: never cut them. Modes wrap ("t2v i2v" over
    # "v2v" for Helios) to leave the sources room on an 80-column terminal; the family is in the name
    # (and in `vidgen models show`), which leaves room for what is in the Hugging Face cache.
    table = Table(
        Column("name", no_wrap=True),
        Column("modes", max_width=7),
        "size, frames",
        Column("source", overflow="fold", min_width=17),
        Column("cached", max_width=10),
    )
    for preset in load_presets().values():
        size = f"{preset.width}x{preset.height}, {preset.frames}"
        table.add_row(preset.name, " ".join(preset.modes), size, preset.source, _on_disk(preset))
    Console().print(table)


def _on_disk(preset: "Preset") -> str:
    """The `cached` column: how much of a released model the hub cache holds ("damaged" for a cache
    folder that cannot be read), or whether a tiny model is built yet."""
    from vidgen.families import registry  # torch and huggingface_hub load only when a command runs
    from vidgen.weights import tiny
    from vidgen.weights.download import cached_status

    if preset.is_tiny:
        return "built" if tiny.is_built(*preset.tiny_variant) else "built on first use"
    try:
        return cached_status(preset.source, registry.WEIGHTS.classes_for)
    except VidgenError:
        return "damaged"


@models_app.command("show", cls=Command)
def show(name: str = typer.Argument(..., metavar="NAME", help="A preset name from `vidgen models`.")) -> None:
    """Print one preset's settings."""
    presets = load_presets()
    preset = find_preset(name, presets)
    with _reported_errors():
        if preset is None:
            close = close_names(name, presets)
            hint = f"did you mean {', '.join(close)}?" if close else "`vidgen models` lists the presets"
            raise VidgenError(f"unknown preset '{name}'", hint)
    table = Table("setting", "value", show_header=False)
    for setting, value in vars(preset).items():
        shown = dict(value) if setting in ("scheduler", "transformer") and value is not None else value
        table.add_row(setting, " ".join(shown) if setting == "modes" else str(shown))
    Console().print(table)
