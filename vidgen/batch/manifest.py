"""The batch's manifest: one JSON line per job as it finishes, appended and flushed, read back to resume.

A single process writes OUTDIR/manifest.jsonl; under torchrun each rank writes its own
OUTDIR/manifest.rank<N>.jsonl, so no two processes append to one file. Readers merge every part: the
latest record for a name (by its `finished` time, then its place in its file) says where that job
stands. Nothing is ever rewritten, so an interrupted batch keeps every record it made.
"""

import json
import os
import re
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TextIO

from vidgen import console
from vidgen.io.probe import is_whole

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
    status: str  # "ok" | "failed" | "skipped"
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
    with open(path, encoding="utf-8") as file:
        for number, line in enumerate(file, start=1):
            if not line.strip():
                continue
            try:
                records.append(Record.from_json(json.loads(line)))
            except (ValueError, TypeError):
                # A line torn by a crash mid-write: that job just counts as not done.
                console.warning(f"{path}:{number}: not a manifest record; ignored")
    return records


def is_done(record: Record | None, spec: dict[str, Any] | None, folder: Path) -> bool:
    """A job is done when its latest record says so, asked for the same settings, and its output is there
    and whole (a file cut short since, or never finished, makes the job run again)."""
    return (
        record is not None
        and record.status in DONE
        and record.job == spec
        and record.output is not None
        and is_whole(folder / record.output)
    )


class ManifestWriter:
    """Appends records to one manifest file; each is on disk before the next job starts."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: TextIO = open(path, "a", encoding="utf-8")  # noqa: SIM115 - closed by close()

    def write(self, record: Record) -> None:
        self._file.write(json.dumps(asdict(record), ensure_ascii=False) + "\n")
        self._file.flush()
        os.fsync(self._file.fileno())

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> "ManifestWriter":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()
