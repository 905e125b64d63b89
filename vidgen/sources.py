"""Where a model comes from: `--model` names a preset, a local diffusers-format folder or a hub repo.

`parse_model` only looks at the name (no download), so the CLI can check every other option first;
`fetch_model` then builds the tiny model or downloads the repo and returns the folder.
"""

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from vidgen.errors import VidgenError
from vidgen.presets import Preset, close_names, find_preset

# Hugging Face repo ids: "owner/name", letters, digits, "-", "_", ".".
REPO_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*")


@dataclass(frozen=True)
class ModelSource:
    spec: str  # what the user typed
    kind: str  # "preset" | "folder" | "hub"
    location: str  # the folder, the repo id, or the preset's source
    preset: Preset | None = None  # the preset named by `spec`, if it named one

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
    if preset is not None:
        return ModelSource(spec, "preset", preset.source, preset)
    path = Path(spec).expanduser()
    if path.is_dir():
        return ModelSource(spec, "folder", str(path.resolve()))
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


def fetch_configs(source: ModelSource, cache_dir: Path | None = None) -> Path:
    """A folder holding at least the model's JSON configs, enough to validate a request.

    For a hub repo only the JSON files are fetched (kilobytes), so a wrong option is reported before
    gigabytes of weights download.
    """
    if source.from_hub:
        return download(source.location, only_configs=True).folder
    return fetch_model(source, cache_dir).folder


def fetch_model(source: ModelSource, cache_dir: Path | None = None) -> FetchedModel:
    """The model's folder on disk: built (tiny presets), downloaded (hub), or as given (folder)."""
    if source.from_hub:
        return download(source.location)
    if source.preset is not None:
        return build_tiny(source.preset, cache_dir)
    return FetchedModel(Path(source.location), None)


def build_tiny(preset: Preset, cache_dir: Path | None = None) -> FetchedModel:
    """A tiny preset's folder, built on first use (seconds), from the cache after that."""
    from transformers.utils import logging

    from vidgen import tiny

    family, variant = preset.tiny_variant
    # save_pretrained draws a bar per weights file; on a first run they would be all the user sees.
    was_enabled = logging.is_progress_bar_enabled()
    logging.disable_progress_bar()
    try:
        folder = tiny.ensure_tiny(family, variant, cache_dir=cache_dir)
    finally:
        if was_enabled:
            logging.enable_progress_bar()
    return FetchedModel(folder, f"tiny builder v{tiny.BUILDER_VERSION}, seed 0")


def download(repo_id: str, only_configs: bool = False) -> FetchedModel:
    """Snapshot a hub repo into the Hugging Face cache (HF_HOME, HF_HUB_OFFLINE are honoured)."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
    )

    local_hint = "or download it elsewhere and pass the local diffusers folder: --model /path/to/folder"
    try:
        folder = Path(snapshot_download(repo_id, allow_patterns=["*.json"] if only_configs else None))
    except LocalEntryNotFoundError:
        raise VidgenError(
            f"model '{repo_id}' is not in the local Hugging Face cache and cannot be downloaded "
            "(offline: HF_HUB_OFFLINE is set or the hub is unreachable)",
            f"connect and run again once, {local_hint}",
        ) from None
    except GatedRepoError:
        raise VidgenError(
            f"model '{repo_id}' is gated on the Hugging Face Hub",
            f"accept its licence on the hub and log in with `hf auth login`, {local_hint}",
        ) from None
    except RepositoryNotFoundError:
        raise VidgenError(
            f"no model '{repo_id}' on the Hugging Face Hub",
            "check the repo id, or pass a preset name (see `vidgen models`) or a local folder",
        ) from None
    except HfHubHTTPError as error:
        raise VidgenError(f"downloading '{repo_id}' failed: {error}", f"try again, {local_hint}") from None
    # snapshot_download returns .../snapshots/<commit>: the exact revision, for the sidecar.
    return FetchedModel(folder, folder.name)
