"""Model presets: one TOML file per model in `presets/`, read into a frozen dataclass.

A preset names where the weights come from and the settings the model's authors use; a new checkpoint
is a new file, not new code.
"""

import difflib
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from vidgen.runtime.mag_cache import valid_ratios

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
}


@dataclass(frozen=True)
class Preset:
    name: str
    family: str  # "cogvideox" | "helios"
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

    @property
    def is_tiny(self) -> bool:
        return self.source.startswith(TINY_PREFIX)

    @property
    def tiny_variant(self) -> tuple[str, str]:
        """(family, variant) of a tiny model, from a source like "tiny:cogvideox/t2v"."""
        family, _, variant = self.source.removeprefix(TINY_PREFIX).partition("/")
        return family, variant


def load_preset(path: Path) -> Preset:
    """Read one preset file; a missing or unknown key is an error in the file, named in the message."""
    with open(path, "rb") as file:
        data = tomllib.load(file)
    known = {f.name for f in fields(Preset)}
    unknown = sorted(set(data) - known)
    missing = sorted(known - set(data) - OPTIONAL_KEYS)
    if unknown or missing:
        raise ValueError(f"{path}: unknown keys {unknown}, missing keys {missing}")
    data["modes"] = tuple(data["modes"])
    data["scheduler"] = tuple(sorted(data.get("scheduler", {}).items()))
    data["guidance"] = float(data["guidance"])
    lora = data.get("lora", ())
    data["lora"] = (lora,) if isinstance(lora, str) else tuple(lora)
    ratios = data.get("mag_ratios", [])
    if not isinstance(ratios, list) or (ratios and not valid_ratios(ratios)):
        raise ValueError(f"{path}: mag_ratios must be a list of positive numbers, got {ratios!r}")
    data["mag_ratios"] = tuple(float(ratio) for ratio in ratios)
    return Preset(**data)


def load_presets(directory: Path = PRESET_DIR) -> dict[str, Preset]:
    """Every preset in `directory`, by name, in file-name order; then the user's own, from the folder
    $VIDGEN_PRESETS names (a fine-tune's settings, or a family added beside vidgen's)."""
    presets: dict[str, Preset] = {}
    for path in [*sorted(directory.glob("*.toml")), *_user_preset_files()]:
        preset = load_preset(path)
        if preset.name in presets:
            raise ValueError(f"{path}: preset name {preset.name!r} is already used")
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


def match_preset(architecture: str, modes: tuple[str, ...], presets: Mapping[str, Preset]) -> Preset | None:
    """The preset whose defaults suit a model folder of this architecture and modes.

    Released models come first, so a real checkpoint gets its authors' settings; a tiny preset is only
    used when no released one matches. A shape no preset has (a fine-tune with another position
    scheme) gets a preset with the same modes; the CLI then fits the size to the model's limits.
    """
    ordered = sorted(presets.values(), key=lambda preset: preset.is_tiny)
    exact = [p for p in ordered if p.architecture == architecture and p.modes == modes]
    same_modes = [p for p in ordered if p.modes == modes]
    return (exact or same_modes or [None])[0]
