"""`vidgen download` and first-use downloads: fetch what a model lacks into the hub cache, then verify.

Only the files vidgen reads are fetched (see `hub.select`); files already cached whole are kept, a
partial one resumes, a damaged one is fetched again. The result is checked as loading will need it:
every shard each index names is present and every safetensors header parses.
"""

from dataclasses import dataclass
from pathlib import Path

from vidgen import hub, model_check
from vidgen.download_progress import DownloadProgress
from vidgen.errors import VidgenError


@dataclass(frozen=True)
class Listing:
    repo_id: str  # the cache's spelling: where the files go
    commit: str
    files: list[hub.RemoteFile]


def list_needed(repo_id: str, command: str, only_configs: bool = False) -> Listing:
    """The files vidgen needs from `repo_id`, with sizes, from the hub (one request, with a timeout)."""
    hub_name, commit, files = hub.list_files(repo_id, command)
    cached = hub.cached_repo(repo_id)
    # Files join an existing cache folder (a resumed download) under its spelling of the id.
    name = cached.name.removeprefix("models--").replace("--", "/", 1) if cached else hub_name
    return Listing(name, commit, hub.select(files, only_configs))


def missing_files(listing: Listing) -> list[hub.RemoteFile]:
    """The listed files not yet whole in the cache; a cached file of the wrong size is removed."""
    snapshot = hub.snapshot_folder(listing.repo_id, listing.commit)
    missing = []
    for file in listing.files:
        path = snapshot / file.path
        if path.is_file() and path.stat().st_size == file.size:
            continue
        if path.exists() or path.is_symlink():
            _remove_with_blob(path)
        missing.append(file)
    return missing


def _remove_with_blob(path: Path) -> None:
    target = path.resolve() if path.is_symlink() else None
    path.unlink()
    if target is not None and target.is_file():
        target.unlink()


def download(repo_id: str, command: str, progress: DownloadProgress, only_configs: bool = False) -> Path:
    """Fetch what the cache lacks of `repo_id` and return the verified snapshot folder."""
    listing = list_needed(repo_id, command, only_configs)
    missing = missing_files(listing)
    progress.begin(listing.repo_id, listing.files, missing)
    try:
        for file in missing:
            hub.fetch_file(listing.repo_id, listing.commit, file, progress.bar_for(file), command)
    finally:
        progress.__exit__(None, None, None)
    snapshot = hub.snapshot_folder(listing.repo_id, listing.commit)
    _point_refs_main(snapshot)
    verify(snapshot, f"run `{command}` again", only_configs)
    return snapshot


def _point_refs_main(snapshot: Path) -> None:
    """refs/main names the snapshot just completed, so the next run finds it offline."""
    refs = snapshot.parent.parent / "refs"
    refs.mkdir(parents=True, exist_ok=True)
    (refs / "main").write_text(snapshot.name)


def verify(folder: Path, repair: str, only_configs: bool = False) -> None:
    """The folder holds a complete model: JSON, classes, tokenizer files, every shard whole."""
    model_check.check_configs(folder, repair)
    if not only_configs:
        model_check.check_weights(folder, repair)


def is_complete(folder: Path, only_configs: bool = False) -> VidgenError | None:
    """None if `folder` is complete, else the problem (for the caller to raise or repair)."""
    try:
        verify(folder, "", only_configs)
    except VidgenError as problem:
        return problem
    return None
