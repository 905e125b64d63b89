"""One batch at a time per OUTDIR: a lock file that names its holder.

Two batches on one folder would both generate every job and append to one manifest. The lock is a
file created exclusively in OUTDIR, holding the holder's PID, host and torchrun group; a second
batch is refused with one line that names the holder. A lock left by a process that died on this
host is taken over; one from another host cannot be checked, so the message says how to remove it.
The ranks of one torchrun run share the lock: the first to arrive creates it with the run's group,
the others see their own group in it, and its creator removes it after the ranks have met at the end.
"""

import contextlib
import json
import os
import socket
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from vidgen.core.errors import VidgenError
from vidgen.runtime.ranks import Rank

LOCK = ".vidgen-batch.lock"  # a job's name never starts with a dot, so no output can take it


def group_id(rank: Rank, environ: Mapping[str, str] = os.environ) -> str | None:
    """What every rank of one torchrun run shares, and no other run: its id and rendezvous address."""
    if not rank.distributed:
        return None
    return "{}@{}:{}".format(
        environ.get("TORCHELASTIC_RUN_ID", ""), environ.get("MASTER_ADDR", ""), environ.get("MASTER_PORT", "")
    )


@contextmanager
def outdir_lock(outdir: Path, group: str | None) -> Iterator[None]:
    """Hold OUTDIR's lock while the block runs; raises VidgenError when another batch holds it.

    OUTDIR is made if missing, and removed again afterwards if nothing but the lock went into it.
    """
    created = not outdir.exists()
    try:
        outdir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise VidgenError(
            f"cannot create '{outdir}': {error.strerror or error}", "choose another -o"
        ) from None
    path = outdir / LOCK
    owner = False
    try:
        owner = _take(path, group)
        yield
    finally:
        if owner:
            path.unlink(missing_ok=True)
        if created:
            with contextlib.suppress(OSError):  # only when empty: a batch that wrote nothing leaves none
                outdir.rmdir()


def _take(path: Path, group: str | None) -> bool:
    """Create the lock (True), join this torchrun group's (False), or raise naming the holder."""
    holder = {"pid": os.getpid(), "host": socket.gethostname(), "group": group}
    for _ in range(3):  # a stale lock removed, or one released while we looked: try again
        try:
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            found = _read(path)
            if found is None:
                continue
            if group is not None and found.get("group") == group:
                return False
            if _is_stale(found):
                path.unlink(missing_ok=True)
                continue
            raise _in_use(path, found) from None
        except OSError as error:
            raise VidgenError(
                f"cannot write to '{path.parent}': {error.strerror or error}", "choose another -o"
            ) from None
        with os.fdopen(descriptor, "w") as file:
            json.dump(holder, file)
        return True
    raise _in_use(path, _read(path) or {})


def _read(path: Path) -> dict | None:
    """The holder, or None when the lock went away; a lock still being written reads as unknown."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    except OSError:
        return {}
    try:
        found = json.loads(text)
    except ValueError:
        return {}
    return found if isinstance(found, dict) else {}


def _is_stale(found: dict) -> bool:
    """Left by a process that no longer runs on this host."""
    pid = found.get("pid")
    if found.get("host") != socket.gethostname() or not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        return False
    return False


def _in_use(path: Path, found: dict) -> VidgenError:
    who = f"process {found.get('pid', '?')} on {found.get('host', '?')}"
    return VidgenError(
        f"'{path.parent}' is in use by another vidgen batch or server ({who})",
        f"wait for it to finish or choose another -o; if no batch runs there, delete {path}",
    )
