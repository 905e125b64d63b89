"""The checks every command shares: the options as typed, the plan they become, where the output goes,
which model answers, and the size rules every family has. Each check reads only the options, the
input files and the model folder's JSON configs; a mistake becomes one VidgenError that says how to
fix it.
"""

import os
import re
import secrets
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from vidgen.core.choices import MODES
from vidgen.core.errors import VidgenError, article
from vidgen.core.family import Family
from vidgen.core.model_info import ModelInfo, read_json, transformer_settings
from vidgen.core.request import Request, Runtime
from vidgen.core.text import check_text
from vidgen.io.media import read_image, read_video
from vidgen.io.partials import partial_name
from vidgen.io.writer import foreign_entries, format_from_path, sidecar_path
from vidgen.weights.presets import Preset, close_names, find_preset, match_preset
from vidgen.weights.sources import ModelSource

MODE_NAMES = MODES


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
    guidance_2: float | None = None  # --guidance-2: the low-noise expert's (a two-expert model only)
    flow_shift: float | None = None  # --flow-shift, over the scheduler's (families with `flow_shift`)
    dynamic_cfg: bool | None = None
    height: int | None = None
    width: int | None = None
    frames: int | None = None
    fps: int | None = None
    image: str | None = None
    last_image: str | None = None  # --last-image: i2v's last frame (Wan's first-last-frame model)
    video: str | None = None
    strength: float | None = None
    device: str | None = None
    dtype: str | None = None
    offload: str | None = None  # None: the preset's
    quantize: str | None = None
    vae_tiling: bool | None = None
    output: str | None = None
    format: str | None = None
    overwrite: bool = False
    preset: str | None = None  # --preset: whose settings a folder or repo takes; "none": its own sampler
    # Speed levers (checked in validate/runtime.py): None means the preset's attention ("auto").
    attention: str | None = None
    compile: bool = False
    cache: str | None = None  # None: the preset's ("none")
    mag_ratios: str | None = None  # --mag-ratios measure|FILE (with --cache mag); None: the shared store
    lora: tuple[str, ...] | list[str] | None = None  # --lora PATH_OR_REPO[:SCALE]; None: the preset's
    parallel: str | None = None  # --parallel, under torchrun (None: auto there, nothing alone)


@dataclass(frozen=True)
class Output:
    path: Path
    format: str  # "mp4" | "gif" | "png"
    # Whether it may replace what is there when it is written; without, a run that wrote the same name
    # meanwhile keeps its output, and this one fails.
    overwrite: bool = False

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


@dataclass(frozen=True)
class Model:
    """The model every request of a run is checked against: read from its configs, no weights."""

    source: ModelSource
    family: Family
    info: ModelInfo
    preset: Preset  # the named preset, or the one whose defaults a folder or repo gets
    configs: Path  # a folder holding at least the model's JSON configs
    notes: tuple[str, ...] = ()  # which preset a folder took, and why


NO_PRESET = "none"

# Steps for a folder that is no released model: enough for its own scheduler to give a fair picture,
# few enough that a small fine-tune or a copied tiny model answers in seconds, not minutes.
OWN_STEPS = 20


def released_preset(
    configs: Path, family: Family, info: ModelInfo, presets: Mapping[str, Preset]
) -> Preset | None:
    """The released preset whose transformer config the folder's is, if any."""
    class_name = family.classes["transformer"][0]
    folder_settings = transformer_settings(class_name, read_json(configs / "transformer" / "config.json"))

    def released_config(preset: Preset) -> bool:
        if preset.family != family.name:
            return False
        return transformer_settings(class_name, dict(preset.transformer or ())) == folder_settings

    return match_preset(info.architecture, info.modes, presets, released_config)


def own_defaults(closest: Preset, info: ModelInfo) -> Preset:
    """The settings of a folder that is no released model: its own scheduler and sample size, OWN_STEPS
    steps; guidance, fps and precision from the closest preset, none of its extras (LoRAs, cache ratios
    measured on another model)."""
    height, width, frames = info.sample_size
    return replace(
        closest,
        name=NO_PRESET,
        height=height,
        width=width,
        frames=frames,
        # Any frame count the VAE takes: which ones a fine-tune was trained on, no preset knows.
        frame_step=info.temporal_scale,
        max_frames=max(closest.max_frames, frames),
        steps=OWN_STEPS,
        scheduler=(),
        dynamic_cfg=False,
        amplify_first_chunk=False,
        lora=(),
        mag_ratios=(),
        transformer=None,
    )


def chosen_preset(name: str, matched: Preset, info: ModelInfo, presets: Mapping[str, Preset]) -> Preset:
    """The preset --preset names (not "none"), which must be of the model's family."""
    preset = find_preset(name, presets)
    if preset is None:
        close = close_names(name, presets)
        hint = f"did you mean {', '.join(close)}?" if close else "`vidgen models` lists the presets"
        raise VidgenError(f"unknown --preset '{name}'", f"{hint} (or --preset {NO_PRESET})")
    if preset.family != info.family:
        raise VidgenError(
            f"--preset {preset.name} is a {preset.family} preset; the model is {info.family}",
            f"pass a {info.family} preset such as {matched.name}, or --preset {NO_PRESET}",
        )
    return preset


def with_flow_shift(request: Request, shift: float | None, family: Family) -> Request:
    """The request with `--flow-shift` over the sampler's shift (the preset's or the folder's); a
    family whose sampler has no shift refuses it."""
    if shift is None:
        return request
    check_flow_shift(shift, family)
    scheduler = dict(request.scheduler) | {"flow_shift": shift}
    return replace(request, scheduler=tuple(sorted(scheduler.items())))


def check_flow_shift(shift: float | None, family: Family) -> None:
    """A family whose sampler has no shift refuses `--flow-shift` (a batch's, once for every job)."""
    if shift is not None and not family.flow_shift:
        raise VidgenError(
            f"--flow-shift sets a flow-matching sampler's shift; {family.title}'s sampler has none",
            "drop --flow-shift",
        )


def describe_settings(preset: Preset) -> str:
    """The sampling settings a preset brings, for the note that says which were taken."""
    scheduler = dict(preset.scheduler)
    name = scheduler.pop("_class_name", None)
    tweaks = ", ".join(f"{key} {value}" for key, value in scheduler.items())
    sampler = f"sampler {name}" if name else "the folder's own scheduler"
    sampler = f"{sampler} ({tweaks})" if tweaks else sampler
    dynamic = ", dynamic guidance" if preset.dynamic_cfg else ""
    return f"{sampler}, {preset.steps} steps, guidance {preset.guidance:g}{dynamic}"


def resolve_prompt(argument: str | None, option: str | None, stdin: TextIO | None) -> str:
    """The prompt from PROMPT or --prompt ("-" reads standard input); it must not be empty."""
    if argument is not None and option is not None:
        raise VidgenError("two prompts given", "pass the prompt either as an argument or with --prompt")
    prompt = argument if argument is not None else option
    if prompt == "-" and stdin is not None:
        try:
            prompt = stdin.read()
        except UnicodeDecodeError as error:
            raise VidgenError(
                f"the prompt on stdin is not valid UTF-8 text (byte 0x{error.object[error.start]:02x})",
                "pipe in UTF-8 text",
            ) from None
    if prompt is None or not prompt.strip():
        raise VidgenError(
            "the prompt is empty",
            'pass one, e.g. vidgen t2v --model tiny-cogvideox "a cat walks on the beach", or - to read stdin',
        )
    return check_text(prompt.strip(), "the prompt")


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
    if output and format != "png" and named != format:  # a player picks the decoder by the name
        raise VidgenError(
            f"--format {format} writes a .{format} file, but the output '{output}' is not named .{format}",
            f"name it {Path(output).stem}.{format}",
        )
    path = Path(output).expanduser() if output else default_output_name(prompt, seed, format)
    if path.name in ("", ".", ".."):  # a folder, not a name: nothing to put the sidecar beside
        raise VidgenError(
            f"-o {output} names no output", "name one, e.g. -o frames for a folder of PNG frames"
        )
    check_writable(path, format, overwrite)
    return Output(path, format, overwrite)


def default_output_name(prompt: str, seed: int, format: str) -> Path:
    """`a-cat-walks-on-the-beach-1234.mp4` in the current folder: the prompt's first words and the seed."""
    words = re.findall(r"[a-z0-9]+", prompt.lower())[:6]
    stem = "-".join(words)[:48].strip("-") or "video"
    return Path(f"{stem}-{seed}" + ("" if format == "png" else f".{format}"))


def check_writable(path: Path, format: str, overwrite: bool) -> None:
    """The output (and its sidecar) can be written: checked now, not after minutes of generating."""
    check_name_length(path)
    check_path_text(path, "the output")
    for target in (path, sidecar_path(path)):
        if target.exists() and not overwrite:
            raise VidgenError(
                f"'{target}' already exists", "pass --overwrite to replace it, or choose another name with -o"
            )
    wants_folder = format == "png"
    if path.exists() and path.is_dir() != wants_folder:
        kind = "folder" if path.is_dir() else "file"
        raise VidgenError(
            f"'{path}' is a {kind}; {article(format)} {format} output cannot replace it", "choose another -o"
        )
    foreign = foreign_entries(path) if path.is_dir() else []
    if foreign:  # --overwrite replaces frames vidgen wrote, never the user's own files
        raise VidgenError(
            f"'{path}' holds files vidgen did not write ({', '.join(foreign[:3])}); --overwrite replaces "
            "only a folder of frame_NNNNN.png files",
            "choose another -o, or move those files out",
        )
    sidecar = sidecar_path(path)
    if sidecar.is_dir():  # --overwrite replaces a settings file, never a folder
        raise VidgenError(
            f"'{sidecar}' is a folder; the settings file written beside the output cannot replace it",
            "choose another -o, or move that folder",
        )
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


def check_path_text(path: Path, what: str) -> None:
    """`path` is UTF-8 text (the sidecar and the manifest record it) and no name in it is longer than a
    file system allows: one line now, not an exception from the first look at the disk."""
    try:
        str(path).encode("utf-8")
    except UnicodeEncodeError:
        shown = os.fsencode(path).decode("utf-8", "backslashreplace")
        raise VidgenError(
            f"{what} '{shown}' is not valid UTF-8 (vidgen records it in its JSON files)",
            "choose a name made of UTF-8 characters",
        ) from None
    for part in path.parts:
        if len(part.encode()) > 255:  # NAME_MAX on every common file system
            raise VidgenError(
                f"{what} has a name of {len(part.encode())} bytes, '{part[:40]}...'; at most 255 fit",
                "choose a shorter -o",
            )


def check_name_length(path: Path) -> None:
    """The output's name leaves room for the longest name written beside it, the sidecar's hidden
    partial file (`.NAME.json.1a2b3c4d.partial.json`): found now, not when writing after generating."""
    longest = len(os.fsencode(partial_name(sidecar_path(path)).name))
    try:
        limit = os.pathconf(path.parent, "PC_NAME_MAX")
    except (OSError, ValueError):
        limit = 255  # the usual limit, where the folder cannot say (or does not exist yet)
    if longest > limit:
        size = len(os.fsencode(path.name))
        shown = os.fsencode(path.name[:40]).decode("utf-8", "backslashreplace")
        raise VidgenError(
            f"the output name '{shown}...' is {size} bytes; at most {limit - (longest - size)} fit "
            "(vidgen writes NAME.json and hidden partial files beside the output)",
            "choose a shorter -o",
        )


def check_mode(mode: str, info: ModelInfo, name: str, presets: Mapping[str, Preset]) -> None:
    if mode in info.modes:
        return
    able = [p for p in presets.values() if mode in p.modes]
    # One released model and one tiny one, so the hint also works offline.
    examples = [p.name for p in able if not p.is_tiny][:1] + [p.name for p in able if p.is_tiny][:1]
    if mode == "i2v":
        what = "has no image input"
    elif "t2v" in info.modes:  # a text model without video-to-video (Wan 2.2's)
        what = "takes no input video"
    else:
        what = "only animates an image"
    raise VidgenError(
        f"'{name}' cannot do {MODE_NAMES[mode]}: it {what} (modes: {', '.join(info.modes)})",
        f"use `vidgen {info.modes[0]}` with it, or {article(mode)} {mode} model such as "
        f"{' or '.join(examples)}",
    )


def required(path: str | None, option: str, example: str) -> str:
    if not path:
        raise VidgenError(f"{option} is missing", f"pass the input with {option} {example}")
    return path


def check_last_image(options: Options, info: ModelInfo) -> None:
    """--last-image goes with an image-to-video model that takes a last frame; a first-last-frame model
    needs it. Checked before any file is read."""
    if options.mode != "i2v":
        return
    if options.last_image and info.last_image == "never":
        raise VidgenError(
            f"'{options.model}' cannot take --last-image: it animates from a first frame alone",
            "drop --last-image, or pass a first-last-frame model (Wan-AI/Wan2.1-FLF2V-14B-720P-diffusers)",
        )
    if not options.last_image and info.last_image == "required":
        raise VidgenError(
            f"--last-image is missing: '{options.model}' is a first-last-frame model and needs the video's "
            "last frame too",
            "pass it with --last-image last.png",
        )


def untrained_frames_note(frames: int, preset: Preset) -> list[str]:
    """A note when `frames` is off the preset's trained frame counts (stepN+1 up to its maximum)."""
    if (frames - 1) % preset.frame_step == 0 and frames <= preset.max_frames:
        return []
    return [
        f"{preset.name} was trained on {preset.frame_step}N+1 frames up to {preset.max_frames}; "
        f"{frames} frames run but may look worse"
    ]


def check_video_length(available: int, frames: int, path: str) -> None:
    """The input video holds `frames` frames (0: none of the counts the model takes fit)."""
    if frames == 0:
        raise VidgenError(f"video '{path}' is too short ({available} frames)", "pass a longer video")
    if available < frames:
        raise VidgenError(
            f"video '{path}' has {available} frames, fewer than --frames {frames}",
            "pass fewer --frames or a longer video",
        )


def check_strength(steps: int, strength: float) -> None:
    """Video-to-video runs the last steps x strength steps: at least one."""
    if int(steps * strength) == 0:
        raise VidgenError(
            f"--strength {strength} with {steps} steps leaves no denoising step",
            "raise --strength or --steps so that steps x strength is at least 1",
        )


def check_size(height: int, width: int, info: ModelInfo, name: str) -> None:
    multiple = info.size_multiple
    for option, value in (("--height", height), ("--width", width)):
        if value % multiple:
            lower, upper = value // multiple * multiple, (value // multiple + 1) * multiple
            choices = f"{lower} or {upper}" if lower else str(upper)
            raise VidgenError(f"{option} {value} is not a multiple of {multiple}", f"use {option} {choices}")
    if info.fixed_size and (height, width) != info.sample_size[:2]:
        raise VidgenError(fixed_size_message(name, info), "drop --height/--width/--frames")
    limit = info.max_size
    if limit and (height > limit[0] or width > limit[1]):
        raise VidgenError(
            f"'{name}' generates at most {limit[1]}x{limit[0]} (width x height); {width}x{height} is larger",
            "pass a smaller --height/--width",
        )


def fixed_size_message(name: str, info: ModelInfo) -> str:
    height, width, frames = info.sample_size
    return (
        f"'{name}' only generates {width}x{height} with {frames} frames: its learned position "
        "embeddings fix the size"
    )


@dataclass
class InputReader:
    """Reads the input images and videos of many requests, each distinct file once.

    A batch checks every job before loading; jobs that share one large image decoded it once per job.
    A file counts as the same while its resolved path, size and modification time are; what was read
    (or why it could not be) is kept, the pixels up to `max_bytes` in all. One reader serves one
    check of one batch: it is passed in, never kept at module level.
    """

    max_bytes: int = 2**30
    _kept: dict[tuple, Any] = field(default_factory=dict)
    _bytes: int = 0

    def image(self, path: str) -> np.ndarray:
        return self._read("image", path, None, lambda: read_image(path))

    def video(self, path: str, max_frames: int | None = None) -> np.ndarray:
        return self._read("video", path, max_frames, lambda: read_video(path, max_frames=max_frames))

    def lora(self, text: str, family: str, check: Any) -> Any:
        """`check()`'s Lora for `--lora TEXT`, once per batch: a LoRA shared by many jobs would be read
        and hashed (hundreds of MB) for each of them."""
        key = ("lora", text, family)
        kept = self._kept.get(key)
        if isinstance(kept, VidgenError):
            raise VidgenError(kept.message, kept.hint, kept.exit_code)
        if kept is None:
            try:
                kept = self._kept[key] = check()
            except VidgenError as error:
                self._kept[key] = error
                raise
        return kept

    def _read(self, kind: str, path: str, max_frames: int | None, read: Any) -> np.ndarray:
        identity = _file_identity(path)
        if identity is None:  # missing or unreadable: the reader says so in its own words
            return read()
        key = (kind, identity, max_frames)
        if key in self._kept:
            kept = self._kept[key]
            if isinstance(kept, VidgenError):
                raise VidgenError(kept.message, kept.hint, kept.exit_code)
            return kept
        try:
            pixels = read()
        except VidgenError as error:
            self._kept[key] = error
            raise
        if self._bytes + pixels.nbytes <= self.max_bytes:
            pixels.flags.writeable = False  # shared by every request that reads the file
            self._kept[key] = pixels
            self._bytes += pixels.nbytes
        return pixels


def _file_identity(path: str) -> tuple[str, int, int] | None:
    try:
        resolved = Path(path).expanduser().resolve()
        stat = resolved.stat()
    except (OSError, RuntimeError):
        return None
    return str(resolved), stat.st_mtime_ns, stat.st_size
