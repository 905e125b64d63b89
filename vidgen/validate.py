"""Turn the command line's options into a checked plan, before any weights load.

Every check reads only the options, the input files and the model folder's JSON configs; a mistake
becomes one VidgenError that says how to fix it. The Plan that comes out (Request, Runtime, output) is
trusted by everything downstream.
"""

import re
import secrets
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

import torch

from vidgen.errors import VidgenError
from vidgen.io.media import read_image, read_video
from vidgen.io.writer import format_from_path, sidecar_path
from vidgen.model_info import ModelInfo, detect_family, read_cogvideox_info, read_helios_info
from vidgen.presets import Preset, load_presets, match_preset
from vidgen.request import Request, Runtime
from vidgen.sources import ModelSource, fetch_configs, parse_model

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
MODE_NAMES = {"t2v": "text-to-video", "i2v": "image-to-video", "v2v": "video-to-video"}
DEFAULT_STRENGTH = Request.__dataclass_fields__["strength"].default


@dataclass(frozen=True)
class Options:
    """The generation options as typed; None means "the model's default"."""

    mode: str  # "t2v" | "i2v" | "v2v"
    model: str
    prompt: str | None = None  # --prompt
    prompt_argument: str | None = None  # the positional PROMPT
    negative_prompt: str = ""
    seed: int | None = None
    steps: int | None = None
    guidance: float | None = None
    dynamic_cfg: bool | None = None
    height: int | None = None
    width: int | None = None
    frames: int | None = None
    fps: int | None = None
    image: str | None = None
    video: str | None = None
    strength: float | None = None
    device: str | None = None
    dtype: str | None = None
    offload: str = "none"
    vae_tiling: bool | None = None
    output: str | None = None
    format: str | None = None
    overwrite: bool = False


@dataclass(frozen=True)
class Output:
    path: Path
    format: str  # "mp4" | "gif" | "png"

    @property
    def sidecar(self) -> Path:
        return sidecar_path(self.path)


@dataclass(frozen=True)
class Plan:
    """Everything needed to generate and write one video; every value already checked."""

    request: Request
    runtime: Runtime
    source: ModelSource
    preset: Preset  # the named preset, or the one whose defaults a folder or repo got
    output: Output
    inputs: dict[str, str] = field(default_factory=dict)  # "image" / "video" -> path as given
    notes: tuple[str, ...] = ()  # lines for the user: defaults chosen for them, fallbacks


def prepare(
    options: Options,
    stdin: TextIO | None = None,
    presets: Mapping[str, Preset] | None = None,
    cache_dir: Path | None = None,
) -> Plan:
    """Check the options against the model's configs and build the plan; raises VidgenError."""
    presets = load_presets() if presets is None else presets
    notes: list[str] = []
    prompt = resolve_prompt(options.prompt_argument, options.prompt, stdin)
    source = parse_model(options.model, presets)
    seed = resolve_seed(options.seed, notes)
    output = plan_output(options.output, options.format, options.overwrite, prompt, seed)
    device = resolve_device(options.device)
    model = resolve_model(source, presets, cache_dir)
    check_mode(options.mode, model.info, options.model, presets)
    request = build_request(options, prompt, seed, model.preset, model.info, notes)
    runtime = build_runtime(options, model.preset, device, notes)
    inputs = {name: path for name in ("image", "video") if (path := getattr(options, name))}
    return Plan(request, runtime, source, model.preset, output, inputs, tuple(notes))


@dataclass(frozen=True)
class Model:
    """The model every request of a run is checked against: read from its configs, no weights."""

    source: ModelSource
    info: ModelInfo
    preset: Preset  # the named preset, or the one whose defaults a folder or repo gets


def resolve_model(source: ModelSource, presets: Mapping[str, Preset], cache_dir: Path | None = None) -> Model:
    """What the model can do and its defaults, from its JSON configs (a hub repo's are kilobytes)."""
    info = read_model_info(fetch_configs(source, cache_dir), source.spec)
    preset = source.preset or match_preset(info.architecture, info.modes, presets)
    if preset is None:  # presets/ lacks a model with these modes: a new one needs its file
        raise ValueError(f"no preset matches architecture {info.architecture!r} with modes {info.modes}")
    return Model(source, info, preset)


def resolve_prompt(argument: str | None, option: str | None, stdin: TextIO | None) -> str:
    """The prompt from PROMPT or --prompt ("-" reads standard input); it must not be empty."""
    if argument is not None and option is not None:
        raise VidgenError("two prompts given", "pass the prompt either as an argument or with --prompt")
    prompt = argument if argument is not None else option
    if prompt == "-" and stdin is not None:
        prompt = stdin.read()
    if prompt is None or not prompt.strip():
        raise VidgenError(
            "the prompt is empty",
            'pass one, e.g. vidgen t2v --model tiny-cogvideox "a cat walks on the beach", or - to read stdin',
        )
    return prompt.strip()


def resolve_seed(seed: int | None, notes: list[str]) -> int:
    """The seed as given (torch takes 64 bits), or a random one that the user is told."""
    if seed is not None and seed >= 2**64:
        raise VidgenError(f"--seed {seed} is too large", "use a seed below 2**64")
    if seed is None:
        seed = secrets.randbelow(2**32)
        notes.append(f"seed {seed} (random; --seed {seed} repeats this video)")
    return seed


def plan_output(output: str | None, format: str | None, overwrite: bool, prompt: str, seed: int) -> Output:
    """Where the video goes and in which format; refuses to replace anything unless `overwrite`."""
    named = format_from_path(Path(output)) if output else None
    if format and named and format != named:
        raise VidgenError(
            f"--format {format} does not match the output name '{output}'",
            f"name the output .{format}, or drop --format",
        )
    format = format or named or (None if output else "mp4")
    if format is None:
        raise VidgenError(
            f"cannot tell the output format from '{output}'",
            "name it .mp4 or .gif, or pass --format png for a folder of PNG frames",
        )
    path = Path(output).expanduser() if output else default_output_name(prompt, seed, format)
    check_writable(path, format, overwrite)
    return Output(path, format)


def default_output_name(prompt: str, seed: int, format: str) -> Path:
    """`a-cat-walks-on-the-beach-1234.mp4` in the current folder: the prompt's first words and the seed."""
    words = re.findall(r"[a-z0-9]+", prompt.lower())[:6]
    stem = "-".join(words)[:48].strip("-") or "video"
    return Path(f"{stem}-{seed}" + ("" if format == "png" else f".{format}"))


def check_writable(path: Path, format: str, overwrite: bool) -> None:
    """The output (and its sidecar) can be written: checked now, not after minutes of generating."""
    for target in (path, sidecar_path(path)):
        if target.exists() and not overwrite:
            raise VidgenError(
                f"'{target}' already exists", "pass --overwrite to replace it, or choose another name with -o"
            )
    wants_folder = format == "png"
    if path.exists() and path.is_dir() != wants_folder:
        kind = "folder" if path.is_dir() else "file"
        raise VidgenError(f"'{path}' is a {kind}; a {format} output cannot replace it", "choose another -o")
    parent = path.parent
    if not parent.exists():
        raise VidgenError(f"cannot write '{path}': folder '{parent}' does not exist", "create it first")
    if not parent.is_dir():
        raise VidgenError(f"cannot write '{path}': '{parent}' is not a folder", "choose another -o")
    try:
        with tempfile.TemporaryFile(dir=parent):
            pass
    except OSError as error:
        raise VidgenError(
            f"cannot write to folder '{parent}': {error.strerror or error}", "choose another -o"
        ) from None


def resolve_device(device: str | None) -> str:
    """The device to run on: as given (and available), else CUDA when there is one, else the CPU."""
    if device is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        kind = torch.device(device).type
    except RuntimeError:
        raise VidgenError(f"unknown device '{device}'", "use cpu, cuda or cuda:N") from None
    if kind == "cuda" and not torch.cuda.is_available():
        raise VidgenError("CUDA is not available on this machine", "pass --device cpu")
    if kind == "cuda" and (torch.device(device).index or 0) >= torch.cuda.device_count():
        raise VidgenError(f"no device {device}", f"this machine has {torch.cuda.device_count()} CUDA devices")
    if kind == "mps" and not torch.backends.mps.is_available():
        raise VidgenError("MPS is not available on this machine", "pass --device cpu")
    return device


def read_model_info(folder: Path, name: str) -> ModelInfo:
    readers = {"cogvideox": read_cogvideox_info, "helios": read_helios_info}
    return readers[detect_family(folder)](folder)


def check_mode(mode: str, info: ModelInfo, name: str, presets: Mapping[str, Preset]) -> None:
    if mode in info.modes:
        return
    able = [p for p in presets.values() if mode in p.modes]
    # One released model and one tiny one, so the hint also works offline.
    examples = [p.name for p in able if not p.is_tiny][:1] + [p.name for p in able if p.is_tiny][:1]
    what = "has no image input" if mode == "i2v" else "only animates an image"
    raise VidgenError(
        f"'{name}' cannot do {MODE_NAMES[mode]}: it {what} (modes: {', '.join(info.modes)})",
        f"use `vidgen {info.modes[0]}` with it, or a {mode} model such as {' or '.join(examples)}",
    )


def build_request(
    options: Options, prompt: str, seed: int, preset: Preset, info: ModelInfo, notes: list[str]
) -> Request:
    """The checked Request: defaults filled in, sizes fit the model, media read."""
    if info.family == "helios":  # whole chunks, pyramid stages: its own rules
        from vidgen.validate_helios import helios_request

        return helios_request(options, prompt, seed, info, preset, notes)
    height, width, frames = default_size(preset, info)
    height, width = options.height or height, options.width or width
    check_size(height, width, info, options.model)
    image = video = None
    if options.mode == "i2v":
        image = read_image(_required(options.image, "--image", "photo.png"))
    if options.mode == "v2v":
        video = read_video(
            _required(options.video, "--video", "clip.mp4"), max_frames=options.frames or frames
        )
        frames = options.frames or longest_valid_frames(len(video), info, "v2v")
        check_video_length(len(video), frames, options.video)
        video = video[:frames]
    frames = options.frames or frames
    check_frames(frames, info, options.mode, options.model)
    notes.extend(_frames_notes(frames, preset, info, options.mode))
    steps = options.steps or preset.steps
    strength = options.strength if options.strength is not None else DEFAULT_STRENGTH
    if options.mode == "v2v" and int(steps * strength) == 0:
        raise VidgenError(
            f"--strength {strength} with {steps} steps leaves no denoising step",
            "raise --strength or --steps so that steps x strength is at least 1",
        )
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


def _required(path: str | None, option: str, example: str) -> str:
    if not path:
        raise VidgenError(f"{option} is missing", f"pass the input with {option} {example}")
    return path


def default_size(preset: Preset, info: ModelInfo) -> tuple[int, int, int]:
    """Height, width, frames: the preset's, unless the model cannot take them (then its sample size).

    That matters for folders matched to a released preset: a tiny 1.5-shaped folder cannot take
    1.5's 768x1360, and a learned-position model takes only its own sample size.
    """
    if info.fixed_size:
        return info.sample_size
    limit = info.max_size
    if limit and (preset.height > limit[0] or preset.width > limit[1]):
        return (*limit, preset.frames)
    return preset.height, preset.width, preset.frames


def check_size(height: int, width: int, info: ModelInfo, name: str) -> None:
    multiple = info.size_multiple
    for option, value in (("--height", height), ("--width", width)):
        if value % multiple:
            lower, upper = value // multiple * multiple, (value // multiple + 1) * multiple
            choices = f"{lower} or {upper}" if lower else str(upper)
            raise VidgenError(f"{option} {value} is not a multiple of {multiple}", f"use {option} {choices}")
    if info.fixed_size and (height, width) != info.sample_size[:2]:
        raise VidgenError(_fixed_size_message(name, info), "drop --height/--width/--frames")
    limit = info.max_size
    if limit and (height > limit[0] or width > limit[1]):
        raise VidgenError(
            f"'{name}' generates at most {limit[0]}x{limit[1]} (height x width); {height}x{width} is larger",
            "pass a smaller --height/--width",
        )


def check_frames(frames: int, info: ModelInfo, mode: str, name: str) -> None:
    if info.fixed_size and frames != info.sample_size[2]:
        raise VidgenError(_fixed_size_message(name, info), "drop --height/--width/--frames")
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
    valid = [n for n in range(1, frames + 4 * info.temporal_scale) if not frames_problem(n, info, mode)]
    lower = [n for n in valid if n < frames][-1:]
    upper = [n for n in valid if n > frames][:1]
    return "--frames " + " or ".join(str(n) for n in lower + upper)


def longest_valid_frames(available: int, info: ModelInfo, mode: str) -> int:
    """The most frames, at most `available`, that the model takes (0 when none fit)."""
    for frames in range(available, 0, -1):
        if not frames_problem(frames, info, mode):
            return frames
    return 0


def check_video_length(available: int, frames: int, path: str) -> None:
    if frames == 0:
        raise VidgenError(f"video '{path}' is too short ({available} frames)", "pass a longer video")
    if available < frames:
        raise VidgenError(
            f"video '{path}' has {available} frames, fewer than --frames {frames}",
            "pass fewer --frames or a longer video",
        )


def _fixed_size_message(name: str, info: ModelInfo) -> str:
    height, width, frames = info.sample_size
    return (
        f"'{name}' only generates {height}x{width} with {frames} frames: its learned position "
        "embeddings fix the size"
    )


def _frames_notes(frames: int, preset: Preset, info: ModelInfo, mode: str) -> list[str]:
    notes = []
    if not info.fixed_size and ((frames - 1) % preset.frame_step or frames > preset.max_frames):
        notes.append(
            f"{preset.name} was trained on {preset.frame_step}N+1 frames up to {preset.max_frames}; "
            f"{frames} frames run but may look worse"
        )
    decoded = info.decoded_frames(info.latent_frames(frames))
    if decoded != frames:  # only 1.5's video-to-video gets here: check_frames refuses the rest
        notes.append(
            f"the output will have {decoded} frames for {frames} input frames: the VAE decodes an even "
            "number of latent frames to 4 frames each (diffusers does the same)"
        )
    return notes


def build_runtime(options: Options, preset: Preset, device: str, notes: list[str]) -> Runtime:
    dtype = options.dtype or preset.dtype
    if options.dtype is None and dtype == "fp16" and torch.device(device).type == "cpu":
        # fp16 matmuls on the CPU are slow and overflow where CUDA's do not.
        notes.append(f"running in fp32 on the CPU instead of {preset.name}'s fp16 (--dtype fp16 forces it)")
        dtype = "fp32"
    return Runtime(
        device=device,
        dtype=DTYPES[dtype],
        offload=options.offload,
        vae_tiling=options.vae_tiling if options.vae_tiling is not None else preset.vae_tiling,
    )


def dtype_name(dtype: torch.dtype) -> str:
    return next(name for name, value in DTYPES.items() if value == dtype)
