"""`vidgen download` and first-use downloads: fetch what a model lacks into the hub cache, then verify.

Only the files vidgen reads are fetched (see `hub.select`); files already cached whole are kept, a
partial one resumes, a damaged one is fetched again. The result is checked as loading will need it:
every shard each index names is present and every safetensors header parses.
"""

from dataclasses import dataclass
from pathlib import Path

from vidgen.core.errors import VidgenError
from vidgen.weights import hub, model_check
from vidgen.weights.download_progress import DownloadProgress
from vidgen.weights.model_check import ClassesFor


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
    chosen = hub.select(files, only_configs)
    if not any(file.path == "model_index.json" for file in chosen):
        raise VidgenError(
            f"'{repo_id}' on the hub has no model_index.json: not a diffusers-format model",
            "pass a CogVideoX or Helios repo in diffusers format, or a preset (see `vidgen models`)",
        )
    return Listing(name, commit, chosen)


def missing_files(listing: Listing, dry_run: bool = False) -> list[hub.RemoteFile]:
    """The listed files not yet whole in the cache; a cached file of the wrong size is removed (unless
    `dry_run`), so that it downloads again."""
    snapshot = hub.snapshot_folder(listing.repo_id, listing.commit)
    missing = []
    for file in listing.files:
        path = snapshot / file.path
        if path.is_file() and path.stat().st_size == file.size:
            continue
        if (path.exists() or path.is_symlink()) and not dry_run:
            _remove_with_blob(path, snapshot.parent.parent)
        missing.append(file)
    return missing


def _remove_with_blob(path: Path, repo: Path) -> None:
    """Remove a damaged snapshot entry and the blob it links to, but nothing outside the repo's cache
    folder: a link to a file elsewhere (a user's own copy) loses only the link."""
    home = repo.resolve()
    if not path.parent.resolve().is_relative_to(home):
        raise VidgenError(
            f"the cached '{path}' does not match the hub's size, and its folder links outside {home}; "
            "vidgen changes nothing outside the cache",
            f"replace the link {path.parent} by a folder, or remove it, and run again",
        )
    target = path.resolve() if path.is_symlink() else None
    path.unlink()
    if target is not None and target.is_file() and target.is_relative_to(home):
        target.unlink()


def download(
    repo_id: str,
    command: str,
    progress: DownloadProgress,
    classes_for: ClassesFor,
    only_configs: bool = False,
) -> Path:
    """Fetch what the cache lacks of `repo_id` and return the verified snapshot folder; with the hub
    out of reach, a model complete in the cache is that folder (and a note says it was not updated)."""
    try:
        listing = list_needed(repo_id, command, only_configs)
    except hub.HubUnreachable as error:
        snapshot = _complete_snapshot(repo_id, classes_for, only_configs)
        if snapshot is None:
            raise
        progress.note(f"{repo_id}: complete in the cache; {_no_updates(error)}")
        return snapshot
    missing = missing_files(listing)
    progress.begin(listing.repo_id, listing.files, missing)
    for file in missing:
        hub.fetch_file(listing.repo_id, listing.commit, file, progress.file(file), command)
    snapshot = hub.snapshot_folder(listing.repo_id, listing.commit)
    _point_refs_main(snapshot)
    verify(snapshot, f"run `{command}` again", classes_for, only_configs)
    return snapshot


def _point_refs_main(snapshot: Path) -> None:
    """refs/main names the snapshot just completed, so the next run finds it offline."""
    refs = snapshot.parent.parent / "refs"
    refs.mkdir(parents=True, exist_ok=True)
    (refs / "main").write_text(snapshot.name)


def verify(folder: Path, repair: str, classes_for: ClassesFor, only_configs: bool = False) -> None:
    """The folder holds a complete model: JSON, classes (`classes_for` names those its family runs),
    tokenizer files, every shard whole."""
    model_check.check_configs(folder, repair, classes_for(folder), tokenizer_files=not only_configs)
    if not only_configs:
        model_check.check_weights(folder, repair)


def is_complete(folder: Path, classes_for: ClassesFor, only_configs: bool = False) -> VidgenError | None:
    """None if `folder` is complete, else the problem (for the caller to raise or repair)."""
    try:
        verify(folder, "", classes_for, only_configs)
    except VidgenError as problem:
        return problem
    return None


def _complete_snapshot(repo_id: str, classes_for: ClassesFor, only_configs: bool = False) -> Path | None:
    snapshot = hub.cached_snapshot(repo_id)
    return (
        snapshot
        if snapshot is not None and is_complete(snapshot, classes_for, only_configs) is None
        else None
    )


def _no_updates(error: hub.HubUnreachable) -> str:
    return f"the hub could not be asked for updates: {error.why}"


def dry_run(repo_id: str, command: str, classes_for: ClassesFor) -> list[str]:
    """What `vidgen download` would fetch, listed (one request to the hub, nothing written)."""
    try:
        listing = list_needed(repo_id, command)
    except hub.HubUnreachable as error:
        return describe_cache_only(repo_id, command, error, classes_for)
    return describe_listing(listing, missing_files(listing, dry_run=True))


def describe_cache_only(
    repo_id: str, command: str, error: hub.HubUnreachable, classes_for: ClassesFor
) -> list[str]:
    """`--dry-run` with the hub out of reach: a model complete in the cache is listed as such; for any
    other, which files are missing and their size are known only to the hub, and the error says so."""
    snapshot = _complete_snapshot(repo_id, classes_for)
    if snapshot is None:
        cached = hub.cached_snapshot(repo_id)
        files = [path for path in cached.rglob("*") if path.is_file()] if cached is not None else []
        held = f"the cache holds {len(files)} of its files" if files else "the cache holds none of it"
        raise VidgenError(
            f"'{repo_id}' would need files that the cache lacks, their number and size unknown while the "
            f"hub cannot be asked: {error.why}; {held}",
            f"run `{command} --dry-run` once the hub is reachable",
        )
    files = sorted(path for path in snapshot.rglob("*") if path.is_file())
    cached = hub.select(
        [hub.RemoteFile(path.relative_to(snapshot).as_posix(), path.stat().st_size) for path in files]
    )
    name = snapshot.parent.parent.name.removeprefix("models--").replace("--", "/", 1)
    return describe_listing(Listing(name, snapshot.name, cached), []) + [_no_updates(error)]


def describe_listing(listing: Listing, missing: list[hub.RemoteFile]) -> list[str]:
    """`vidgen download --dry-run`: every file with its size and whether it is cached, then the total."""
    todo = {file.path for file in missing}
    width = max(len(file.path) for file in listing.files)
    lines = []
    for file in listing.files:
        state = "to download" if file.path in todo else "cached"
        lines.append(f"{file.path:<{width}}  {hub.describe_size(file.size):>9}  {state}")
    total = sum(file.size for file in listing.files)
    todo_size = sum(file.size for file in missing)
    lines.append(
        f"{listing.repo_id}@{listing.commit[:12]}: {len(listing.files)} files, {hub.describe_size(total)}; "
        f"{len(missing)} to download ({hub.describe_size(todo_size)}) into {hub.cache_root()}"
    )
    return lines


def cached_status(repo_id: str, classes_for: ClassesFor) -> str:
    """For `vidgen models`: "9.7 GB" when the cache holds the whole model, "partly, 1.2 GB", or "no"."""
    snapshot = hub.cached_snapshot(repo_id)
    if snapshot is None:
        return "no"
    size = sum(path.stat().st_size for path in snapshot.rglob("*") if path.is_file())
    whole = is_complete(snapshot, classes_for) is None
    return hub.describe_size(size) if whole else f"partly, {hub.describe_size(size)}"
