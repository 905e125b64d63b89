"""The batch's manifest: one JSON line per job as it finishes, appended and flushed, read back to resume.

A single process writes OUTDIR/manifest.jsonl; under torchrun each rank writes its own
OUTDIR/manifest.rank<N>.jsonl, so no two processes append to one file. Readers merge every part: the
latest record for a name (by its `finished` time, then its place in its file) says where that job
stands. Records are only appended, so an interrupted batch keeps every record it made; the one
rewrite is `repair`, which drops a line a crash tore mid-write.
"""

import contextlib
import errno
import json
import math
import os
import re
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from vidgen.core.errors import VidgenError
from vidgen.io.probe import is_whole
from vidgen.ui import console

MANIFEST = "manifest.jsonl"
PART = re.compile(r"manifest\.rank(\d+)\.jsonl")
DONE = ("ok", "skipped")  # skipped: done by an earlier run, and still what the job asks for


def now() -> str:
    """UTC, to the microsecond: ISO strings in one format sort as the times do."""
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


@dataclass(frozen=True)
class Record:
    """One line of the manifest."""

    name: str
    line: int  # in the job file
    status: str  # "ok" | "failed" | "skipped"; "started" before a job runs, so its files are known
    error: str | None = None
    output: str | None = None  # relative to the manifest's folder
    seconds: float | None = None  # generating and writing; a skipped job keeps the run that made it
    job: dict[str, Any] | None = None  # the settings as asked for (None: the model's default)
    settings: dict[str, Any] | None = None  # as generated: seed, size, steps... (the sidecar has more)
    warnings: list[str] = field(default_factory=list)
    rank: int = 0
    finished: str = field(default_factory=now)

    @classmethod
    def from_json(cls, values: dict[str, Any]) -> "Record":
        known = cls.__dataclass_fields__
        return cls(**{key: value for key, value in values.items() if key in known})


def manifest_name(rank: int, world_size: int) -> str:
    return MANIFEST if world_size == 1 else f"manifest.rank{rank}.jsonl"


def manifest_files(folder: Path) -> list[Path]:
    """Every part of the manifest in `folder`: manifest.jsonl, then the rank parts in rank order."""
    parts = [path for path in folder.glob("manifest.rank*.jsonl") if PART.fullmatch(path.name)]
    parts.sort(key=lambda path: int(PART.fullmatch(path.name).group(1)))
    return [path for path in [folder / MANIFEST, *parts] if path.is_file()]


def read_records(folder: Path) -> list[Record]:
    """All records of all parts, oldest first."""
    records = [record for path in manifest_files(folder) for record in _read_part(path)]
    return sorted(records, key=lambda record: record.finished)  # stable: a file's own order breaks ties


def latest(folder: Path) -> dict[str, Record]:
    """Where each job stands: its latest record, by name."""
    return {record.name: record for record in read_records(folder)}


def _read_part(path: Path) -> list[Record]:
    records = []
    for number, line in enumerate(path.read_bytes().split(b"\n"), start=1):
        record = _record(line)
        if record is not None:
            records.append(record)
        elif line.strip():
            # A line torn by a crash mid-write: that job counts as not done (`repair` drops the line).
            console.warning(f"{path}:{number}: not a manifest record; ignored")
    return records


def _record(line: bytes) -> Record | None:
    """The record a manifest line holds, or None for a blank or torn one."""
    try:
        values = json.loads(line)
        return Record.from_json(values) if isinstance(values, dict) else None
    except (ValueError, TypeError):
        return None


def torn_names(folder: Path) -> set[str]:
    """The job names that torn lines in `folder`'s manifest began to record, as far as they can be read.

    A record is written after its job's output, so such a job's files are the batch's own: they are
    replaced when the job runs again, not reported as someone else's.
    """
    names = set()
    for path in manifest_files(folder):
        for line in path.read_bytes().split(b"\n"):
            if line.strip() and _record(line) is None and (name := _torn_name(line)) is not None:
                names.add(name)
    return names


def _torn_name(line: bytes) -> str | None:
    match = re.match(rb'\s*\{"name": ("(?:[^"\\]|\\.)*")', line)
    try:
        return json.loads(match.group(1)) if match else None
    except ValueError:
        return None


def repair(path: Path) -> bool:
    """Drop the torn lines of one manifest part, replacing the file atomically; whether it was torn.

    Appending after a line torn without its newline would glue the next record onto it, and the
    warning about the torn line would repeat on every run.
    """
    if not path.is_file():
        return False
    data = path.read_bytes()
    lines = [line for line in data.split(b"\n") if line.strip()]
    whole = [line for line in lines if _record(line) is not None]
    if len(whole) == len(lines) and (not data or data.endswith(b"\n")):
        return False
    partial = path.with_name(f".{path.name}.repair-{os.getpid()}")
    try:
        with open(partial, "wb") as file:
            file.write(b"".join(line + b"\n" for line in whole))
            file.flush()
            os.fsync(file.fileno())
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    return True


def is_done(
    record: Record | None, spec: dict[str, Any] | None, resolved: dict[str, Any] | None, folder: Path
) -> bool:
    """A job is done when its latest record says so, its output is there, and it asked for the same
    video: the same settings as written, or the same once defaults are filled in (`--guidance 6.0`
    where 6.0 is the preset's asks for what leaving it out asks for). The output must be whole: a file
    cut short since, or never finished, makes the job run again."""
    return (
        record is not None
        and record.status in DONE
        and record.output is not None
        and is_whole(folder / record.output)
        and (
            record.job == spec
            or (resolved is not None and _same_video(resolved, recorded_resolution(record)))
        )
    )


def _same_video(resolved: dict[str, Any], recorded: dict[str, Any] | None) -> bool:
    """The resolved settings against a record's. VAE tiling left to the memory plan (None before the
    plan is made) matches whatever the plan then chose."""
    if recorded is None:
        return False
    if resolved.get("vae_tiling") is None:
        recorded = {key: value for key, value in recorded.items() if key != "vae_tiling"}
        resolved = {key: value for key, value in resolved.items() if key != "vae_tiling"}
    return resolved == recorded


# Settings in a record that do not decide the video: the same job on another device is the same job.
NOT_DECIDING = ("device", "offload")


def resolved_settings(settings: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any]:
    """What decides a video, defaults filled in: the generated `settings` (a record's, or a plan's),
    with the seed as asked (None: any seed, as a job without one takes a random one) and the format.
    Compared as JSON holds it, so tuples and lists are one thing."""
    values = {key: value for key, value in settings.items() if key not in NOT_DECIDING}
    values.update(seed=spec.get("seed"), format=spec.get("format"))
    return json.loads(json.dumps(values))


def recorded_resolution(record: Record) -> dict[str, Any] | None:
    if record.settings is None or record.job is None:
        return None
    return resolved_settings(record.settings, record.job)


def record_line(record: Record) -> str:
    """The record as one line of strict JSON: a value that is not finite is written as text (JSON has
    no NaN or Infinity, and Python's json would write them as bare tokens other readers refuse)."""
    return json.dumps(_finite(asdict(record)), ensure_ascii=False, allow_nan=False) + "\n"


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(item) for item in value]
    return value


class ManifestWriter:
    """Appends records to one manifest file; each is on disk before the next job starts.

    A record goes down in one write of the whole line, then fsync. A write that stops short (a full
    disk, a file-size limit) is cut back off, so every line in the file stays a whole record, and the
    batch stops with one line saying why: a job that cannot be recorded would run again next time.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def write(self, record: Record) -> None:
        line = record_line(record).encode()
        start = os.fstat(self._fd).st_size
        try:
            written = os.write(self._fd, line)
            if written != len(line):
                raise OSError(errno.ENOSPC, f"only {written} of {len(line)} bytes fit")
            os.fsync(self._fd)
        except OSError as error:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, start)
            raise VidgenError(
                f"cannot record job '{record.name}' in {self.path}: {error.strerror or error}",
                "free some space (or raise the file-size limit), then run the same command again to resume",
            ) from None

    def close(self) -> None:
        os.close(self._fd)

    def __enter__(self) -> "ManifestWriter":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()
