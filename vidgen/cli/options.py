"""Every command-line option of vidgen, declared once; each command takes the ones it names.

An option is a parameter name, its type and its Typer declaration. None means "not given": the preset
(or the model) decides. The choice options offer the names of `vidgen.core.choices` (and the attention
backends' table), the tables the checks validate against, so `--help` loads no torch.
"""

import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any

import typer
from rich.markup import escape

from vidgen.core import choices
from vidgen.runtime.attention import ATTENTION_CHOICES


def choice(name: str, values: Sequence[str]) -> type[Enum]:
    """A str Enum of `values`, which is how Typer offers (and checks) a choice."""
    return Enum(name, {value: value for value in values}, type=str)


DType = choice("DType", choices.DTYPES)
Offload = choice("Offload", choices.OFFLOADS)
Quantize = choice("Quantize", choices.QUANTIZE_MODES)
Attention = choice("Attention", ATTENTION_CHOICES)
Cache = choice("Cache", choices.CACHE_MODES)
Parallel = choice("Parallel", choices.PARALLEL_MODES)
Format = choice("Format", choices.FORMATS)
StreamFormat = choice("StreamFormat", choices.STREAM_FORMATS)
Mode = choice("Mode", tuple(choices.MODES))


@dataclass(frozen=True)
class Opt:
    name: str  # the parameter's name, as the command's function receives it
    type: Any
    declaration: Any  # typer.Option(...) or typer.Argument(...)


def signature(options: Sequence[Opt]) -> Callable[[Callable], Callable]:
    """Give a command function taking **values the parameters `options`, in that order, for Typer."""

    def apply(function: Callable) -> Callable:
        parameters = [
            inspect.Parameter(
                o.name, inspect.Parameter.KEYWORD_ONLY, default=o.declaration, annotation=o.type
            )
            for o in options
        ]
        function.__signature__ = inspect.Signature(parameters)
        function.__annotations__ = {o.name: o.type for o in options} | {"return": None}
        return function

    return apply


def plain_values(values: dict[str, Any]) -> dict[str, Any]:
    """The command's values with each choice as its name."""
    return {name: value.value if isinstance(value, Enum) else value for name, value in values.items()}


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
GUIDANCE_2 = typer.Option(
    None,
    "--guidance-2",
    min=0.0,
    help="The low-noise expert's guidance scale (Wan 2.2 A14B, a model of two experts).",
    show_default="--guidance when given, else the preset's",
)
FLOW_SHIFT = typer.Option(
    None,
    "--flow-shift",
    help="Wan: the sampler's flow shift (the released folders': 3 for 480p, 5 for 720p); "
    "step-distilled LoRAs name theirs (lightx2v's: 5).",
    show_default="the preset's, else the folder's",
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
    help="Height in pixels, a multiple of the model's VAE scale times its patch size: 16 for most models, "
    "32 for Wan 2.2 TI2V.",
    show_default="the preset's",
)
WIDTH = typer.Option(
    None,
    "--width",
    min=16,
    help="Width in pixels, a multiple of the model's VAE scale times its patch size: 16 for most models, "
    "32 for Wan 2.2 TI2V.",
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
    "pytorch_lora_weights.safetensors, or a hub repo id); repeat it to stack LoRAs. A model of two experts "
    "(Wan 2.2 A14B) takes high=PATH_OR_REPO[:SCALE] or low=... into one of them; a plain one goes into both.",
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
LAST_IMAGE = typer.Option(
    None,
    "--last-image",
    help="The video's last frame, with --image as its first (Wan first-last-frame models).",
    show_default=False,
)
VIDEO = typer.Option(None, "--video", help="The video to transform.", show_default=False)
STRENGTH = typer.Option(
    None,
    "--strength",
    min=0.0,
    max=1.0,
    help="How much to change the video.",
    show_default="0.8",
)


# vidgen stream's own, and its takes on the shared ones.
PROMPT_FILE = typer.Option(
    None, "--prompt-file", help="Prompts by chunk, for a story (see below).", show_default=False
)
INTERPOLATE_CHUNKS = typer.Option(
    0, "--interpolate-chunks", min=0, help="Blend into each new prompt over this many chunks."
)
LIVE = typer.Option(
    False, "--live", help="Read new prompts from stdin while it runs, one a line (see below)."
)
STREAM_IMAGE = typer.Option(None, "--image", "-i", help="Start from this image.", show_default=False)
STREAM_VIDEO = typer.Option(None, "--video", help="Continue this video.", show_default=False)
PYRAMID_STEPS = typer.Option(
    None, "--pyramid-steps", help="Steps per pyramid stage, e.g. 2,2,2.", show_default="the preset's"
)
AMPLIFY_FIRST_CHUNK = typer.Option(
    None,
    "--amplify-first-chunk/--no-amplify-first-chunk",
    help="Twice the steps for the first chunk (Helios-Distilled).",
    show_default="the preset's",
)
STREAM_FRAMES = typer.Option(
    None,
    "--frames",
    min=1,
    help="Frames, rounded up to whole 33-frame chunks, then cut to 4k+1 as diffusers does.",
    show_default="the preset's",
)
WHOLE_CHUNKS = typer.Option(
    False,
    "--whole-chunks",
    help="Keep the last chunk whole (33 frames a chunk, not cut to 4k+1): what a stream ended early "
    "holds, and its sidecar's command replays.",
)
SECONDS = typer.Option(None, "--seconds", help="Length in seconds, instead of --frames.", show_default=False)
STREAM_OUTPUT = typer.Option(
    None,
    "--output",
    "-o",
    help="Output .mp4, folder (png), or - for stdout.",
    show_default="PROMPT-WORDS-SEED.mp4",
)
STREAM_FORMAT = typer.Option(None, "--format", help="mp4 or png.", show_default="from -o, else mp4")

# vidgen batch's own, and its takes on the shared ones.
JOBS = typer.Argument(..., metavar="JOBS", help="A JSONL or CSV job file; - reads stdin.")
OUTDIR = typer.Option(..., "--output", "-o", help="The folder for the videos and the manifest.")
BATCH_MODE = typer.Option(
    None, "--mode", help="The jobs' mode, unless a job sets one.", show_default="the model's first"
)
BATCH_PROMPT = typer.Option(
    None, "--prompt", "-p", help="The prompt of jobs without one.", show_default=False
)
BATCH_FORMAT = typer.Option(None, "--format", help="mp4, gif, or png.", show_default="mp4")
DRY_RUN = typer.Option(False, "--dry-run", help="Check every job and stop; nothing loads or is written.")
BATCH_OVERWRITE = typer.Option(False, "--overwrite", help="Run every job again, replacing earlier outputs.")

# vidgen serve's own.
HOST = typer.Option(
    "127.0.0.1", "--host", help="The address to listen on; any but this machine's needs --api-key."
)
PORT = typer.Option(8000, "--port", min=1, max=65535, help="The TCP port.")
API_KEY = typer.Option(
    None,
    "--api-key",
    envvar="VIDGEN_API_KEY",
    help="Clients must send Authorization: Bearer KEY (or set VIDGEN_API_KEY; it is never logged).",
    show_default=False,
    show_envvar=False,
)
SERVE_DIR = typer.Option(
    "vidgen-serve", "--dir", help="The folder for the job database, the videos and their sidecars."
)
MAX_QUEUE = typer.Option(64, "--max-queue", min=1, help="Jobs that may wait; more are answered 429.")
MAX_UPLOAD_MB = typer.Option(
    20.0,
    "--max-upload-mb",
    min=0.001,
    help="The largest request (an input_reference image) in MiB; 413 past it.",
)

# The commands' parameters, in the order --help shows them.
SOURCE = (Opt("model", str, MODEL), Opt("preset", str | None, PRESET))
SAMPLING = (
    Opt("negative_prompt", str, NEGATIVE_PROMPT),
    Opt("seed", int | None, SEED),
    Opt("steps", int | None, STEPS),
    Opt("guidance", float | None, GUIDANCE),
    Opt("guidance_2", float | None, GUIDANCE_2),
    Opt("flow_shift", float | None, FLOW_SHIFT),
)
DYNAMIC = (Opt("dynamic_cfg", bool | None, DYNAMIC_CFG),)
SIZE = (Opt("height", int | None, HEIGHT), Opt("width", int | None, WIDTH))
LENGTH = (Opt("frames", int | None, FRAMES), Opt("fps", int | None, FPS))
LEVERS = (
    Opt("device", str | None, DEVICE),
    Opt("dtype", DType | None, DTYPE),
    Opt("offload", Offload | None, OFFLOAD),
    Opt("quantize", Quantize | None, QUANTIZE),
    Opt("vae_tiling", bool | None, VAE_TILING),
    Opt("attention", Attention | None, ATTENTION),
    Opt("compile", bool, COMPILE),
    Opt("cache", Cache | None, CACHE),
)
MAG = (Opt("mag_ratios", str | None, MAG_RATIOS),)
LORAS = (Opt("lora", list[str] | None, LORA),)
PARALLELISM = (Opt("parallel", Parallel | None, PARALLEL),)
REPORT = (Opt("quiet", bool, QUIET), Opt("verbose", bool, VERBOSE), Opt("json_output", bool, JSON))
PROMPTS = (Opt("prompt_argument", str | None, PROMPT_ARGUMENT),)
PROMPT_OPTION = (Opt("prompt", str | None, PROMPT),)
IMAGE_INPUT = (Opt("image", str | None, IMAGE), Opt("last_image", str | None, LAST_IMAGE))
VIDEO_INPUT = (Opt("video", str | None, VIDEO), Opt("strength", float | None, STRENGTH))
WRITE = (
    Opt("output", str | None, OUTPUT),
    Opt("format", Format | None, FORMAT),
    Opt("overwrite", bool, OVERWRITE),
)


def generating(*inputs: Opt) -> tuple[Opt, ...]:
    """t2v, i2v and v2v: the same options, with their inputs after the model."""
    return (
        *PROMPTS,
        *SOURCE,
        *inputs,
        *PROMPT_OPTION,
        *SAMPLING,
        *DYNAMIC,
        *SIZE,
        *LENGTH,
        *LEVERS,
        *MAG,
        *LORAS,
        *PARALLELISM,
        *WRITE,
        *REPORT,
    )


T2V = generating()
I2V = generating(*IMAGE_INPUT)
V2V = generating(*VIDEO_INPUT)
STREAM = (
    *PROMPTS,
    *SOURCE,
    *PROMPT_OPTION,
    Opt("prompt_file", str | None, PROMPT_FILE),
    Opt("interpolate_chunks", int, INTERPOLATE_CHUNKS),
    Opt("live", bool, LIVE),
    Opt("image", str | None, STREAM_IMAGE),
    Opt("video", str | None, STREAM_VIDEO),
    *SAMPLING[:3],
    Opt("pyramid_steps", str | None, PYRAMID_STEPS),
    SAMPLING[3],
    Opt("amplify_first_chunk", bool | None, AMPLIFY_FIRST_CHUNK),
    *SIZE,
    Opt("frames", int | None, STREAM_FRAMES),
    Opt("whole_chunks", bool, WHOLE_CHUNKS),
    Opt("seconds", float | None, SECONDS),
    Opt("fps", int | None, FPS),
    *LEVERS,
    *MAG,
    *LORAS,
    *PARALLELISM,
    Opt("output", str | None, STREAM_OUTPUT),
    Opt("format", StreamFormat | None, STREAM_FORMAT),
    Opt("overwrite", bool, OVERWRITE),
    *REPORT,
)
BATCH = (
    Opt("jobs", str, JOBS),
    Opt("outdir", str, OUTDIR),
    *SOURCE,
    Opt("mode", Mode | None, BATCH_MODE),
    Opt("prompt", str | None, BATCH_PROMPT),
    *SAMPLING,
    *DYNAMIC,
    *SIZE,
    *LENGTH,
    *IMAGE_INPUT,
    *VIDEO_INPUT,
    *LEVERS,
    *LORAS,
    Opt("format", Format | None, BATCH_FORMAT),
    Opt("dry_run", bool, DRY_RUN),
    Opt("overwrite", bool, BATCH_OVERWRITE),
    *REPORT,
)
SERVE = (
    *SOURCE,
    Opt("host", str, HOST),
    Opt("port", int, PORT),
    Opt("api_key", str | None, API_KEY),
    Opt("dir", str, SERVE_DIR),
    Opt("max_queue", int, MAX_QUEUE),
    Opt("max_upload_mb", float, MAX_UPLOAD_MB),
    SAMPLING[0],
    *SAMPLING[2:],
    *DYNAMIC,
    Opt("pyramid_steps", str | None, PYRAMID_STEPS),
    Opt("amplify_first_chunk", bool | None, AMPLIFY_FIRST_CHUNK),
    Opt("interpolate_chunks", int, INTERPOLATE_CHUNKS),
    *SIZE,
    *LENGTH,
    *LEVERS,
    *LORAS,
    Opt("quiet", bool, QUIET),
    Opt("verbose", bool, VERBOSE),
)
