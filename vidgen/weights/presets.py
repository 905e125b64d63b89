"""Model presets: one TOML file per model in `presets/`, read into a frozen dataclass.

A preset names where the weights come from and the settings the model's authors use; a new checkpoint
is a new file, not new code.
"""

import difflib
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from vidgen.core.model_info import plain
from vidgen.core.ratios import valid_ratios
from vidgen.ui.console import warning

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib


def _preset_dir() -> Path:
    # A checkout (or editable install) reads presets/ in place; a wheel installs the same files as
    # data under <prefix>/share/vidgen/presets.
    beside_package = Path(__file__).resolve().parents[2] / "presets"
    if beside_package.is_dir():
        return beside_package
    return Path(sys.prefix) / "share" / "vidgen" / "presets"


PRESET_DIR = _preset_dir()

TINY_PREFIX = "tiny:"

# Keys a preset file may leave out: the rest are required, so a typo is an error, not a default.
OPTIONAL_KEYS = {
    "scheduler",
    "amplify_first_chunk",
    "offload",
    "quantize",
    "attention",
    "lora",
    "cache",
    "mag_ratios",
    "transformer",
    "guidance_2",
}

# The types of the keys a preset file sets directly (the others are checked where they are read).
KEY_TYPES = {
    "name": str,
    "family": str,
    "source": str,
    "description": str,
    "architecture": str,
    "dtype": str,
    "height": int,
    "width": int,
    "frames": int,
    "fps": int,
    "steps": int,
    "guidance": (int, float),
    "guidance_2": (int, float),
    "dynamic_cfg": bool,
    "vae_tiling": bool,
    "frame_step": int,
    "max_frames": int,
    "amplify_first_chunk": bool,
    "offload": str,
    "quantize": str,
    "attention": str,
    "cache": str,
    "scheduler": dict,
    "transformer": dict,
}
MODES = ("t2v", "i2v", "v2v")


@dataclass(frozen=True)
class Preset:
    name: str
    family: str  # a name in vidgen.families.registry.FAMILIES
    source: str  # a hub repo id, or "tiny:<family>/<variant>" built offline by vidgen.weights.tiny
    description: str
    # How a model folder without a preset is matched to this one (see model_info.architecture).
    architecture: str
    modes: tuple[str, ...]  # of "t2v", "i2v", "v2v"
    dtype: str  # "fp32" | "fp16" | "bf16"
    height: int
    width: int
    frames: int
    fps: int
    steps: int  # per pyramid stage for Helios-Mid and Helios-Distilled
    guidance: float
    dynamic_cfg: bool
    vae_tiling: bool
    # The frame counts the model was trained on: frame_step * N + 1 up to max_frames. Other counts of
    # the form 4k+1 still run; the CLI notes that they are off the trained range.
    frame_step: int
    max_frames: int
    # Overrides of the folder's scheduler_config.json as (key, value) pairs, sorted; "_class_name"
    # swaps in another scheduler class. Pairs rather than a dict keep the preset hashable.
    scheduler: tuple[tuple[str, Any], ...] = ()
    # Helios-Distilled: its scheduler takes twice the steps for the first chunk, as the authors sample.
    amplify_first_chunk: bool = False
    # How the model shares the device, unless --offload / --quantize say otherwise (vidgen.runtime.memory).
    offload: str = "auto"
    quantize: str = "none"
    # The attention backend (see `vidgen t2v --help`): "auto" picks the fastest one that runs here.
    attention: str = "auto"
    # LoRAs fused into the transformer unless --lora says otherwise: PATH_OR_REPO[:SCALE] each.
    lora: tuple[str, ...] = ()
    # The step cache unless --cache says otherwise (see `vidgen t2v --help`).
    cache: str = "none"
    # Magnitude ratios for `--cache mag`, one per step of a calibrating run (stretched to the step count);
    # empty: vidgen measures them on the user's first run with each schedule.
    mag_ratios: tuple[float, ...] = ()
    # A released model's transformer/config.json as (key, value) pairs, only those that differ from
    # diffusers' class defaults (lists as tuples). A folder takes this preset's settings by itself only
    # when its transformer config is this one; None (tiny presets) never matches a folder.
    transformer: tuple[tuple[str, Any], ...] | None = None
    # A model of two experts (Wan 2.2 A14B): the low-noise expert's guidance, unless --guidance-2 (or
    # --guidance) says otherwise; None: `guidance`.
    guidance_2: float | None = None

    @property
    def is_tiny(self) -> bool:
        return self.source.startswith(TINY_PREFIX)

    @property
    def tiny_variant(self) -> tuple[str, str]:
        """(family, variant) of a tiny model, from a source like "tiny:cogvideox/t2v"."""
        family, _, variant = self.source.removeprefix(TINY_PREFIX).partition("/")
        return family, variant


def load_preset(path: Path) -> Preset:
    """Read one preset file; a missing, unknown or mistyped key is a ValueError naming the file."""
    with open(path, "rb") as file:
        data = tomllib.load(file)
    known = {f.name for f in fields(Preset)}
    unknown = sorted(set(data) - known)
    missing = sorted(known - set(data) - OPTIONAL_KEYS)
    if unknown or missing:
        raise ValueError(f"{path}: unknown keys {unknown}, missing keys {missing}")
    for key, kind in KEY_TYPES.items():
        # bool is an int in Python; a preset saying `steps = true` is still a mistake.
        wrong_bool = isinstance(data.get(key), bool) and kind is not bool
        if key in data and (wrong_bool or not isinstance(data[key], kind)):
            raise ValueError(f"{path}: {key} = {data[key]!r} is not a {_type_name(kind)}")
    modes = data["modes"]
    if not isinstance(modes, list) or not modes or not set(modes) <= set(MODES):
        raise ValueError(f"{path}: modes must be a list of {', '.join(MODES)}, got {modes!r}")
    data["modes"] = tuple(modes)
    data["scheduler"] = tuple(sorted(data.get("scheduler", {}).items()))
    if "transformer" in data:
        data["transformer"] = tuple(sorted((key, plain(value)) for key, value in data["transformer"].items()))
    data["guidance"] = float(data["guidance"])
    if "guidance_2" in data:
        data["guidance_2"] = float(data["guidance_2"])
    lora = data.get("lora", ())
    data["lora"] = (lora,) if isinstance(lora, str) else tuple(lora)
    if not all(isinstance(item, str) for item in data["lora"]):
        raise ValueError(f"{path}: lora must be a string or a list of strings, got {lora!r}")
    ratios = data.get("mag_ratios", [])
    if not isinstance(ratios, list) or (ratios and not valid_ratios(ratios)):
        raise ValueError(f"{path}: mag_ratios must be a list of positive numbers, got {ratios!r}")
    data["mag_ratios"] = tuple(float(ratio) for ratio in ratios)
    return Preset(**data)


def _type_name(kind: type | tuple[type, ...]) -> str:
    names = {str: "string", int: "whole number", bool: "true or false", dict: "table", float: "number"}
    return names[kind] if isinstance(kind, type) else "number"


def load_presets(
    directory: Path | None = None, warn: Callable[[str], None] | None = None
) -> dict[str, Preset]:
    """Every preset in `directory` (default PRESET_DIR), by name, in file-name order; then the user's
    own, from the folder $VIDGEN_PRESETS names (a fine-tune's settings, or a family added beside vidgen's).

    A broken file (bad TOML, an unknown key, a name already taken) is reported through `warn` (default:
    a warning line on stderr) and skipped: one bad file must not stop commands using the others.
    """
    directory = PRESET_DIR if directory is None else directory
    warn = warning if warn is None else warn
    presets: dict[str, Preset] = {}
    for path in [*sorted(directory.glob("*.toml")), *_user_preset_files()]:
        try:
            preset = load_preset(path)
        except (OSError, ValueError, TypeError) as error:  # TOMLDecodeError and UnicodeDecodeError too
            message = str(error) if str(error).startswith(str(path)) else f"{path}: {error}"
            warn(f"preset file skipped: {message}")
            continue
        if preset.name in presets:
            warn(f"preset file skipped: {path}: preset name {preset.name!r} is already used")
            continue
        presets[preset.name] = preset
    if not presets:
        # A broken install (presets/ neither in the checkout nor under <prefix>/share/vidgen) must say so.
        raise FileNotFoundError(f"no preset files in {directory}; reinstall vidgen")
    return presets


def _user_preset_files() -> list[Path]:
    folder = os.environ.get("VIDGEN_PRESETS")
    return sorted(Path(folder).expanduser().glob("*.toml")) if folder else []


def find_preset(name: str, presets: Mapping[str, Preset]) -> Preset | None:
    """The preset called `name`, ignoring case (people type "CogVideoX-5b" as the model card does)."""
    by_folded_name = {key.casefold(): preset for key, preset in presets.items()}
    return by_folded_name.get(name.casefold())


def close_names(name: str, presets: Mapping[str, Preset]) -> list[str]:
    """Preset names that look like `name` or contain it, best first, for "did you mean" hints."""
    names = {key.casefold(): key for key in presets}
    folded = name.casefold()
    matches = difflib.get_close_matches(folded, names, n=3, cutoff=0.5)
    matches += [key for key in names if folded in key and key not in matches]
    return [names[match] for match in matches[:3]]


def match_preset(
    architecture: str,
    modes: tuple[str, ...],
    presets: Mapping[str, Preset],
    released_config: Callable[[Preset], bool],
) -> Preset | None:
    """The released preset a model folder is: same architecture and modes, and `released_config(preset)`
    (its transformer config is that preset's released one). None for anything else: a fine-tune with
    another shape, a copy of a tiny model, which must not run at a released model's size and steps.
    """
    for preset in presets.values():
        if preset.transformer is None or preset.architecture != architecture or preset.modes != modes:
            continue
        if released_config(preset):
            return preset
    return None


def closest_preset(
    architecture: str, modes: tuple[str, ...], presets: Mapping[str, Preset], family: str | None = None
) -> Preset | None:
    """The preset whose general settings (guidance, fps, precision, frame rules) a folder that matches
    no released config starts from: of its family (when given), same architecture and modes, else same
    modes; released first."""
    candidates = [p for p in presets.values() if family is None or p.family == family]
    ordered = sorted(candidates, key=lambda preset: preset.is_tiny)
    exact = [p for p in ordered if p.architecture == architecture and p.modes == modes]
    same_modes = [p for p in ordered if p.modes == modes]
    return (exact or same_modes or [None])[0]
