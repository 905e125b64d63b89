"""The Hugging Face Hub and its local cache: which files vidgen needs, finding them cached, fetching them.

The cache is read first, with no network: a complete cached model loads even when the hub is
unreachable or never answers. Every network call has a timeout. The cache is the standard one
(HF_HUB_CACHE, else HF_HOME/hub, else ~/.cache/huggingface/hub), laid out as the hub client writes it
(models--owner--name/snapshots/<commit>/..., refs/main), so other tools share the files.
"""

import json
import os
import re
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from vidgen.core.errors import VidgenError

DEFAULT_ENDPOINT = "https://huggingface.co"

# Seconds a hub request may go unanswered; VIDGEN_HUB_TIMEOUT overrides it, up to an hour (beyond that
# the socket's timeout overflows, and no answer is worth waiting longer for).
DEFAULT_TIMEOUT = 10.0
MAX_TIMEOUT = 3600.0

# What a hub answer may become as one part of a cache path (an ETag, a commit id): the hub's are hex
# digits. Anything else (a "/", a "..") could reach outside the cache, so it is refused.
PLAIN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}")

# Owners that renamed themselves: the old and new ids hold the same files.
MOVED_OWNERS = {"thudm": "zai-org", "zai-org": "thudm"}

# Base classes of httpx's (and httpx2's) connection and timeout errors.
NETWORK_ERRORS = {"TransportError", "TimeoutException", "NetworkError", "ConnectError"}
NOT_THE_HUB = "the answer is not the hub's answer: a captive portal or a proxy's login page?"

COMPONENTS = (
    *("tokenizer", "text_encoder", "transformer", "vae", "scheduler"),
    *("image_encoder", "image_processor"),  # Wan 2.1 image-to-video's CLIP
)
CONFIG_FILES = {"model_index.json", "config.json", "scheduler_config.json", "preprocessor_config.json"}
TOKENIZER_FILES = {
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "spiece.model",
}


@dataclass(frozen=True)
class RemoteFile:
    path: str  # relative to the repo's root
    size: int  # bytes


class HubUnreachable(VidgenError):
    """The hub could not be asked: offline, no answer, or an answer that is not the hub's (a captive
    portal). `why` says which, for callers that can do without the hub (a model complete in the cache)."""

    def __init__(self, message: str, hint: str, why: str) -> None:
        super().__init__(message, hint)
        self.why = why


def cache_root() -> Path:
    """The hub cache folder, read from the environment each time (tests and users may change it)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    home = os.environ.get("HF_HOME") or Path(os.environ.get("XDG_CACHE_HOME") or "~/.cache") / "huggingface"
    return Path(home).expanduser() / "hub"


def offline_flag() -> bool:
    value = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE") or ""
    return value.strip().lower() in {"1", "true", "yes", "on"}


def endpoint() -> str:
    return (os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")


def timeout() -> float:
    value = os.environ.get("VIDGEN_HUB_TIMEOUT") or str(DEFAULT_TIMEOUT)
    try:
        seconds = float(value)
    except ValueError:
        seconds = 0.0
    if not 0 < seconds <= MAX_TIMEOUT:  # also refuses nan
        raise VidgenError(
            f"VIDGEN_HUB_TIMEOUT={value} is not a number of seconds between 0 and {MAX_TIMEOUT:g}",
            "unset it, or set e.g. 30",
        )
    return seconds


def repo_names(repo_id: str) -> list[str]:
    """The id, and the same repo under its owner's other name (THUDM/X and zai-org/X)."""
    owner, _, name = repo_id.partition("/")
    moved = MOVED_OWNERS.get(owner.casefold())
    return [repo_id] + ([f"{moved}/{name}"] if moved else [])


def cached_repo(repo_id: str) -> Path | None:
    """The cache folder of `repo_id` or its moved twin, matched ignoring case as the hub does."""
    root = cache_root()
    if not root.is_dir():
        return None
    folders = {path.name.casefold(): path for path in root.iterdir() if path.is_dir()}
    for name in repo_names(repo_id):
        found = folders.get(f"models--{name.replace('/', '--')}".casefold())
        if found is not None and (found / "snapshots").is_dir():
            return found
    return None


def cached_snapshot(repo_id: str) -> Path | None:
    """The cached snapshot of `repo_id`: the commit refs/main names, else the newest snapshot.

    A cache another tool or a crash damaged (refs/main not a commit id, snapshots that are links to
    nowhere or to themselves) is one VidgenError naming what is wrong; `vidgen download` repairs it.
    """
    repo = cached_repo(repo_id)
    if repo is None:
        return None
    repair = f"run `vidgen download {repo_id}` to repair it, or delete '{repo}'"
    ref = repo / "refs" / "main"
    commit = None
    if ref.is_file():
        try:
            commit = ref.read_text(encoding="ascii").strip()
        except (OSError, UnicodeDecodeError):
            commit = ""
        if not commit.isalnum():
            raise VidgenError(f"the hub cache of '{repo_id}' is damaged: '{ref}' names no commit", repair)
    try:
        entries = list((repo / "snapshots").iterdir())
    except OSError as error:
        message = f"the hub cache of '{repo_id}' is damaged: cannot list its snapshots ({error.strerror})"
        raise VidgenError(message, repair) from None
    snapshots = [path for path in entries if path.is_dir()]  # is_dir: False for a link to nowhere
    named = repo / "snapshots" / commit if commit else None
    if named is not None and named in snapshots:
        return named
    if snapshots:
        return max(snapshots, key=lambda path: path.stat().st_mtime)
    if entries:
        raise VidgenError(
            f"the hub cache of '{repo_id}' is damaged: '{entries[0]}' is a broken link (to nowhere or to "
            "itself)",
            repair,
        )
    return None


def needed(path: str) -> bool:
    """Whether vidgen uses this repo file: configs, tokenizer files and safetensors weights."""
    parts = path.split("/")
    if len(parts) == 1:
        return path == "model_index.json"
    if len(parts) != 2 or parts[0] not in COMPONENTS:
        return False
    folder, name = parts
    if folder == "tokenizer":
        return name in TOKENIZER_FILES
    return name in CONFIG_FILES or name.endswith((".safetensors", ".safetensors.index.json"))


def select(files: list[RemoteFile], only_configs: bool = False) -> list[RemoteFile]:
    """The files to fetch: what vidgen needs, without variants (a `.fp16.` copy beside the weights)."""
    chosen = [file for file in files if needed(file.path) and not _is_variant(file.path)]
    if only_configs:
        chosen = [file for file in chosen if file.path.endswith(".json")]
    return sorted(chosen, key=lambda file: file.path)


def _is_variant(path: str) -> bool:
    # diffusion_pytorch_model.fp16.safetensors, model.fp16-00001-of-00002.safetensors and their indexes
    name = path.rsplit("/", 1)[-1]
    return any(f".{variant}" in name for variant in ("fp16.", "fp16-", "fp32.", "bf16.", "bf16-", "fp32-"))


def describe_size(size: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size} B"  # unreachable


def unreachable(repo_id: str, reason: str, command: str) -> HubUnreachable:
    """The error for a model that is not (fully) cached and cannot be fetched now."""
    where = f"the cache at {cache_root()}"
    why = "HF_HUB_OFFLINE is set" if offline_flag() else f"the hub at {endpoint()} is unreachable ({reason})"
    online = "unset HF_HUB_OFFLINE and run" if offline_flag() else "run"
    return HubUnreachable(
        f"model '{repo_id}' is not fully in {where} and cannot be downloaded: {why}",
        f"{online} `{command}` once online, or pass a local diffusers folder: --model /path/to/folder",
        why,
    )


def _plain_name(value: object, what: str, repo_id: str) -> str:
    """`value` from a hub answer, checked to be one plain path part before it names anything in the
    cache: a hub or mirror is not trusted to say where files go."""
    if isinstance(value, str) and PLAIN_NAME.fullmatch(value):
        return value
    raise VidgenError(
        f"the hub at {endpoint()} answered for '{repo_id}' with the {what} {value!r}, "
        "which is not a plain name; vidgen refuses to use it as a path in the cache",
        "check that HF_ENDPOINT names the Hugging Face Hub or a faithful mirror of it",
    )


def _in_cache(path: Path) -> Path:
    """`path`, checked to stay inside the cache folder (with every `..` taken as written)."""
    root = Path(os.path.abspath(cache_root()))
    if not Path(os.path.abspath(path)).is_relative_to(root):
        raise VidgenError(
            f"'{path}' lies outside the cache at {root}; vidgen writes only inside it",
            "check that HF_ENDPOINT names the Hugging Face Hub or a faithful mirror of it",
        )
    return path


def list_files(repo_id: str, command: str) -> tuple[str, str, list[RemoteFile]]:
    """(repo id as the hub spells it, commit, files with sizes), in one request with a timeout."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import GatedRepoError, HfHubHTTPError, RepositoryNotFoundError

    if offline_flag():
        raise unreachable(repo_id, "offline", command)
    try:
        info = HfApi(endpoint=endpoint()).model_info(repo_id, files_metadata=True, timeout=timeout())
    except GatedRepoError:
        raise VidgenError(
            f"model '{repo_id}' is gated on the Hugging Face Hub",
            "accept its licence on the hub and log in with `hf auth login`",
        ) from None
    except RepositoryNotFoundError:
        raise VidgenError(
            f"no model '{repo_id}' on the Hugging Face Hub",
            "check the repo id, or pass a preset name (see `vidgen models`) or a local folder",
        ) from None
    except HfHubHTTPError as error:
        raise VidgenError(f"listing '{repo_id}' on the hub failed: {error}", "try again later") from None
    except json.JSONDecodeError:
        # A captive portal or a proxy's login page answers 200 with HTML: the hub was not reached.
        raise unreachable(repo_id, NOT_THE_HUB, command) from None
    except Exception as error:  # httpx's connect/read timeouts and connection errors, whatever their class
        if _is_network_error(error):
            raise unreachable(repo_id, _reason(error), command) from None
        raise
    owner, _, name = (info.id or "").partition("/")
    hub_name = f"{_plain_name(owner, 'repo id', repo_id)}/{_plain_name(name, 'repo id', repo_id)}"
    files = [RemoteFile(sibling.rfilename, sibling.size or 0) for sibling in info.siblings or []]
    return hub_name, _plain_name(info.sha, "commit id", repo_id), files


def _is_network_error(error: Exception) -> bool:
    # The HTTP client's own classes (httpx or its successor, by huggingface_hub's version), by name.
    names = {cls.__name__ for cls in type(error).__mro__}
    return isinstance(error, (ConnectionError, TimeoutError, socket.gaierror)) or bool(names & NETWORK_ERRORS)


def _reason(error: Exception) -> str:
    text = str(error).splitlines()[0] if str(error) else ""
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def fetch_file(
    repo_id: str, commit: str, file: RemoteFile, advance: Callable[[int], None], command: str
) -> Path:
    """One file into the cache as the hub client lays it out (blobs/<etag>, a relative link in the
    snapshot), resuming a partial `blobs/<etag>.incomplete` left by an interrupted run.

    huggingface_hub 2 restarts every interrupted file from zero (and deletes the partial file); a
    10 GB shard should not, so the transfer is done here, through the hub client's HTTP session.
    `advance(bytes)` reports progress, starting with the bytes a resumed file already had.
    """
    from huggingface_hub import get_hf_file_metadata, hf_hub_url
    from huggingface_hub.errors import HfHubHTTPError

    url = hf_hub_url(repo_id, file.path, revision=commit, endpoint=endpoint())
    repo = cache_root() / f"models--{repo_id.replace('/', '--')}"
    link = _in_cache(snapshot_folder(repo_id, commit) / file.path)
    try:
        metadata = get_hf_file_metadata(url, timeout=timeout(), endpoint=endpoint())
        if metadata.etag is None:  # the hub names every file; a page without one is not its answer
            raise unreachable(repo_id, NOT_THE_HUB, command)
        blob = _in_cache(repo / "blobs" / _plain_name(metadata.etag, "ETag", repo_id))
        _fetch_blob(url, blob, metadata.size, advance)
    except HfHubHTTPError as error:
        message = f"downloading '{file.path}' of '{repo_id}' failed: {error}"
        raise VidgenError(message, f"try again: `{command}`") from None
    except Exception as error:
        if _is_network_error(error):
            raise unreachable(repo_id, _reason(error), command) from None
        if isinstance(error, OSError):  # the disk: full, read-only, removed
            message = f"writing '{file.path}' into {cache_root()} failed: {error.strerror or error}"
            raise VidgenError(message, "free some space, or point HF_HUB_CACHE elsewhere") from None
        raise
    link.parent.mkdir(parents=True, exist_ok=True)
    link.unlink(missing_ok=True)
    link.symlink_to(Path(*[".."] * (len(Path(file.path).parts) + 1), "blobs", blob.name))
    return link


def _fetch_blob(url: str, blob: Path, size: int | None, advance: Callable[[int], None]) -> None:
    """The blob, unless another process (a torchrun rank) fetched it while this one waited its turn."""
    from huggingface_hub.utils import WeakFileLock

    lock = blob.parent.parent.parent / ".locks" / blob.parent.parent.name / f"{blob.name}.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    with WeakFileLock(lock):  # one writer per partial file: two appending would corrupt it
        if not blob.is_file():
            _transfer(url, blob, size, advance)


def _transfer(url: str, blob: Path, size: int | None, advance: Callable[[int], None]) -> None:
    """GET `url` into `blob`, appending to its partial file; renamed into place only when whole."""
    from huggingface_hub.utils import build_hf_headers, get_session, hf_raise_for_status

    partial = blob.with_name(blob.name + ".incomplete")
    blob.parent.mkdir(parents=True, exist_ok=True)
    start = partial.stat().st_size if partial.is_file() else 0
    if size is not None and start >= size:
        # Nothing is left to resume (a partial file as long as the blob, or one of another file): the
        # server would answer its range with 416 on every run.
        partial.unlink()
        start = 0
    headers = {**build_hf_headers(), "Accept-Encoding": "identity"}
    if start:
        headers["Range"] = f"bytes={start}-"
    with get_session().stream("GET", url, headers=headers, timeout=timeout()) as response:
        hf_raise_for_status(response)
        if start and response.status_code != 206:  # the server ignored the range: start over
            start = 0
        advance(start)
        with open(partial, "ab" if start else "wb") as out:
            # Chunks as they arrive: a fixed chunk size would buffer, and lose what a dropped connection
            # had already delivered.
            for chunk in response.iter_bytes():
                out.write(chunk)
                advance(len(chunk))
    if size is not None and partial.stat().st_size != size:
        # The connection closed early; the partial file stays for the next run to resume.
        raise ConnectionError(f"the download ended at {partial.stat().st_size} of {size} bytes")
    partial.replace(blob)


def snapshot_folder(repo_id: str, commit: str) -> Path:
    repo = cache_root() / f"models--{repo_id.replace('/', '--')}"
    return _in_cache(repo / "snapshots" / _plain_name(commit, "commit id", repo_id))
