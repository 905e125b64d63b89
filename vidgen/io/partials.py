"""Hidden partial outputs: named beside the output, locked while a process writes them, and removed the
next time the same output is written if the process that made them is gone.

A partial file or folder is held with an advisory lock (flock) for as long as its writer runs. The
kernel drops the lock when the process ends, however it ends (SIGKILL included), so an unlocked
partial is one that no live process will finish: it is safe to remove, and a live writer's is not.
"""

import contextlib
import fcntl
import os
import secrets
import shutil
import time
from pathlib import Path

TAGS = ("partial", "old")  # files being written; a replaced folder waiting to be removed


def partial_name(path: Path, tag: str = "partial") -> Path:
    """A hidden name beside `path` that no other writer uses, keeping the extension last so encoders
    that pick a container by extension still do: `.cat.mp4.3f9a1c2e.partial.mp4`."""
    return path.with_name(f".{path.name}.{secrets.token_hex(4)}.{tag}{path.suffix}")


class Hold:
    """An advisory lock on a partial file or folder, held until `release` (or the process ends)."""

    def __init__(self, path: Path) -> None:
        self._fd = os.open(path, os.O_RDONLY)
        fcntl.flock(self._fd, fcntl.LOCK_EX)

    def release(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)  # closing drops the lock
            self._fd = -1


def remove_stale(*outputs: Path) -> list[Path]:
    """Remove the partial files and folders that dead runs left beside `outputs` (all in one folder,
    read once: a batch's folder may hold many thousands of files); returns them."""
    removed = []
    try:
        names = [entry.name for entry in os.scandir(outputs[0].parent) if entry.name.startswith(".")]
    except OSError:
        return []
    for name in names:
        candidate = outputs[0].parent / name
        if any(_is_partial_of(name, output) for output in outputs) and _unheld(candidate):
            _remove(candidate)
            removed.append(candidate)
    return removed


def remove_stale_folders(parent: Path, prefix: str, min_age: float = 60.0) -> None:
    """Remove the folders named `prefix*` in `parent` that no live process holds and that nothing
    touched for `min_age` seconds (interrupted builds). The age closes the moment between another
    process creating its folder and taking the lock."""
    try:
        candidates = [entry for entry in parent.iterdir() if entry.name.startswith(prefix)]
    except OSError:
        return
    for candidate in candidates:
        try:
            old = time.time() - candidate.stat().st_mtime > min_age
        except OSError:
            continue
        if old and candidate.is_dir() and _unheld(candidate):
            _remove(candidate)


def _is_partial_of(name: str, output: Path) -> bool:
    """`.cat.mp4.3f9a1c2e.partial.mp4` (or `.old.mp4`) for `cat.mp4`."""
    if not name.startswith(f".{output.name}."):
        return False
    rest = name[len(output.name) + 2 :]  # after "." + the output's name + "."
    token, _, tail = rest.partition(".")
    return len(token) == 8 and any(tail == tag + output.suffix for tag in TAGS)


def _unheld(path: Path) -> bool:
    """True when no process holds `path`'s lock (the lock is taken and let go at once)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(OSError):
            path.unlink()
