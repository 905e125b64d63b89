"""Where a model comes from: `--model` names a preset, a local diffusers-format folder or a hub repo.

`parse_model` only looks at the name (no download), so the CLI can check every other option first;
`fetch_model` then builds the tiny model, or finds the repo in the hub cache (downloading what it
lacks), checks the folder is whole (JSON and safetensors headers, no weights read) and returns it.
"""

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from vidgen.core.errors import VidgenError
from vidgen.weights.model_check import ClassesFor, check_model
from vidgen.weights.presets import Preset, close_names, find_preset, load_presets

# Hugging Face repo ids: "owner/name", letters, digits, "-", "_", ".".
REPO_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*")


# (family, variant, cache dir) -> the folder of that tiny model, built on first use.
TinyBuilder = Callable[[str, str, Path | None], Path]


@dataclass(frozen=True)
class Families:
    """What getting weights needs to know of the model families, handed down by the caller (the
    registry's `WEIGHTS`): which classes a folder's family runs, and how to build a tiny model."""

    classes_for: ClassesFor
    build_tiny: TinyBuilder


@dataclass(frozen=True)
class ModelSource:
    spec: str  # what the user typed
    kind: str  # "preset" | "folder" | "hub"
    location: str  # the folder, the repo id, or the preset's source
    preset: Preset | None = None  # the preset named by `spec`, if it named one
    note: str = ""  # for the user, when the name could have meant something else

    @property
    def from_hub(self) -> bool:
        """Whether the weights come from the Hugging Face Hub (a repo id, or a released preset)."""
        return self.kind == "hub" or (self.preset is not None and not self.preset.is_tiny)


@dataclass(frozen=True)
class FetchedModel:
    folder: Path
    revision: str | None  # hub commit, tiny build, or None for a local folder


def parse_model(spec: str, presets: Mapping[str, Preset]) -> ModelSource:
    """Classify `--model` without touching the network; an unknown name lists close preset names."""
    preset = find_preset(spec, presets)
    path = Path(spec).expanduser()
    if path.is_dir():
        # A folder the user has is what they mean, even when a preset has the same name.
        note = ""
        if preset is not None:
            note = f"'{spec}' is the local folder {path.resolve()}, not the preset {preset.name}"
        return ModelSource(spec, "folder", str(path.resolve()), note=note)
    if preset is not None:
        return ModelSource(spec, "preset", preset.source, preset)
    if _looks_like_path(spec):
        raise VidgenError(
            f"no model folder at '{spec}'",
            "check the path, or pass a preset name (see `vidgen models`) or a hub repo id",
        )
    if REPO_ID.fullmatch(spec):
        return ModelSource(spec, "hub", spec)
    close = close_names(spec, presets)
    suggestion = f"did you mean {', '.join(close)}? " if close else ""
    raise VidgenError(
        f"unknown model '{spec}': not a preset, a folder or a hub repo id",
        f"{suggestion}`vidgen models` lists the presets",
    )


def _looks_like_path(spec: str) -> bool:
    return spec.startswith(("/", ".", "~")) or "\\" in spec or spec.count("/") > 1


def fetch_configs(source: ModelSource, families: Families, cache_dir: Path | None = None) -> Path:
    """A folder holding at least the model's JSON configs, enough to validate a request.

    For a hub repo only the JSON files are fetched (kilobytes), so a wrong option is reported before
    gigabytes of weights download.
    """
    if source.from_hub:
        return fetch_hub(source, families.classes_for, only_configs=True).folder
    if source.preset is not None:
        return build_tiny(source.preset, families.build_tiny, cache_dir).folder
    return Path(source.location)


def fetch_model(source: ModelSource, families: Families, cache_dir: Path | None = None) -> FetchedModel:
    """The model's folder on disk: built (tiny presets), downloaded (hub), or as given (folder)."""
    if source.from_hub:
        fetched = fetch_hub(source, families.classes_for)
        repair = f"run `vidgen download {source.spec}` to fetch it again"
        check_model(fetched.folder, repair, families.classes_for(fetched.folder))
        return fetched
    if source.preset is not None:
        return build_tiny(source.preset, families.build_tiny, cache_dir)
    folder = Path(source.location)
    repair = "download the model again or re-save it with save_pretrained"
    check_model(folder, repair, families.classes_for(folder))
    return FetchedModel(folder, None)


def build_tiny(preset: Preset, build: TinyBuilder, cache_dir: Path | None = None) -> FetchedModel:
    """A tiny preset's folder, built on first use (seconds), from the cache after that."""
    from transformers.utils import logging

    from vidgen.weights import tiny

    family, variant = preset.tiny_variant
    # save_pretrained draws a bar per weights file; on a first run they would be all the user sees.
    was_enabled = logging.is_progress_bar_enabled()
    logging.disable_progress_bar()
    try:
        folder = build(family, variant, cache_dir)
    finally:
        if was_enabled:
            logging.enable_progress_bar()
    return FetchedModel(folder, f"tiny builder v{tiny.BUILDER_VERSION}, seed 0")


def fetch_hub(source: ModelSource, classes_for: ClassesFor, only_configs: bool = False) -> FetchedModel:
    """A hub model from the local cache when it is complete there (no network at all), else downloaded.

    A cache that is incomplete or damaged is repaired by downloading; when that cannot happen (offline,
    hub unreachable) the error names the missing or damaged file and the command that fetches it.
    """
    from vidgen.weights import download, hub
    from vidgen.weights.download_progress import DownloadProgress

    command = f"vidgen download {source.spec}"
    snapshot = hub.cached_snapshot(source.location)
    problem = download.is_complete(snapshot, classes_for, only_configs) if snapshot is not None else None
    if snapshot is not None and problem is None:
        return FetchedModel(snapshot, snapshot.name)
    try:
        with DownloadProgress() as progress:
            folder = download.download(source.location, command, progress, classes_for, only_configs)
    except VidgenError:
        if problem is None:
            raise
        # What is wrong with the cache says more than why it could not be repaired now.
        raise VidgenError(problem.message, f"run `{command}` to fetch what is missing or damaged") from None
    return FetchedModel(folder, folder.name)


def hub_repo(spec: str) -> str | None:
    """The hub repo `vidgen download SPEC` fetches: a released preset's, or a repo id as given; None
    for a tiny preset, which is built, not downloaded."""
    presets = load_presets()
    preset = find_preset(spec, presets)
    # Here a preset name wins over a folder of the same name: only a preset or a repo can be downloaded.
    source = ModelSource(spec, "preset", preset.source, preset) if preset else parse_model(spec, presets)
    if source.preset is not None and source.preset.is_tiny:
        return None
    if not source.from_hub:
        raise VidgenError(
            f"'{spec}' is a local folder; there is nothing to download", "pass a preset or repo id"
        )
    return source.location
