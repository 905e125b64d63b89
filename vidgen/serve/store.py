"""The server's jobs, in one SQLite database in --dir (WAL): what survives a kill, and what every worker
(one per GPU under torchrun) claims jobs from.

A job is queued, then claimed by exactly one worker (an UPDATE in an immediate transaction), then
completed or failed. A job whose worker belonged to an earlier server (killed) goes back to the queue
once when the server starts again; killed twice while running, it fails with a line saying so. DELETE
marks a job `deleted` at once (hidden from the API); its worker stops it and removes its files and row.
Steering prompts wait in their own table until the stream's worker takes them at a chunk boundary; the
chunk they were taken at is kept, so a stream run again after a kill replays them at the same chunks.
"""

import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DATABASE = "jobs.sqlite"
# Attempts a job gets: a job running when the server was killed runs once more, then fails.
MAX_ATTEMPTS = 2

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT UNIQUE NOT NULL,
    created_at INTEGER NOT NULL,
    status TEXT NOT NULL,
    progress INTEGER NOT NULL DEFAULT 0,
    model TEXT NOT NULL,
    seconds TEXT NOT NULL,
    size TEXT NOT NULL,
    prompt TEXT NOT NULL,
    stream INTEGER NOT NULL DEFAULT 0,
    options TEXT NOT NULL,
    instance TEXT,
    worker TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    completed_at INTEGER,
    error_code TEXT,
    error_message TEXT,
    deleted INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS jobs_status ON jobs (status, seq);
CREATE TABLE IF NOT EXISTS prompts (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    job TEXT NOT NULL,
    prompt TEXT NOT NULL,
    taken INTEGER NOT NULL DEFAULT 0,
    chunk INTEGER
);
CREATE TABLE IF NOT EXISTS workers (
    name TEXT PRIMARY KEY,
    instance TEXT NOT NULL,
    state TEXT NOT NULL,
    seen REAL NOT NULL
);
"""


@dataclass(frozen=True)
class Job:
    seq: int
    id: str
    created_at: int
    status: str  # queued | in_progress | completed | failed
    progress: int
    model: str
    seconds: str
    size: str
    prompt: str
    stream: bool
    options: dict[str, Any]  # the checked options the worker plans the job from again
    instance: str | None
    worker: str | None
    attempts: int
    completed_at: int | None
    error_code: str | None
    error_message: str | None
    deleted: bool


class QueueFull(Exception):
    pass


class Store:
    """The database at DIR/jobs.sqlite; one connection per thread."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / DATABASE
        self._local = threading.local()
        self._connection().executescript(SCHEMA)  # IF NOT EXISTS: another rank may have made it
        with self._transaction() as db:  # a database from before prompts had their chunk
            if "chunk" not in {row["name"] for row in db.execute("PRAGMA table_info(prompts)")}:
                db.execute("ALTER TABLE prompts ADD COLUMN chunk INTEGER")

    def _connection(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=60, isolation_level=None, check_same_thread=False)
            db.row_factory = sqlite3.Row
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")  # WAL keeps committed jobs through a process kill
            self._local.db = db
        return db

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """An immediate transaction: its reads and writes happen as one, across threads and processes."""
        db = self._connection()
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def add(self, fields: dict[str, Any], max_queue: int) -> Job:
        """Queue a job unless `max_queue` jobs wait already (QueueFull)."""
        with self._transaction() as db:
            waiting = db.execute("SELECT COUNT(*) FROM jobs WHERE status = 'queued' AND deleted = 0")
            if waiting.fetchone()[0] >= max_queue:
                raise QueueFull
            row = {**fields, "options": json.dumps(fields["options"]), "status": "queued"}
            names = ", ".join(row)
            db.execute(
                f"INSERT INTO jobs ({names}) VALUES ({', '.join('?' * len(row))})", tuple(row.values())
            )
        return self.get(fields["id"])

    def get(self, job_id: str, deleted: bool = False) -> Job | None:
        row = self._connection().execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        job = _job(row) if row else None
        return job if job is None or deleted or not job.deleted else None

    def page(self, limit: int, after: str | None, newest_first: bool) -> tuple[list[Job], bool]:
        """Up to `limit` jobs after the one with id `after`, and whether more follow."""
        order, compare = ("DESC", "<") if newest_first else ("ASC", ">")
        where, values = "deleted = 0", []
        if after is not None:
            where += f" AND seq {compare} (SELECT seq FROM jobs WHERE id = ?)"
            values.append(after)
        rows = self._connection().execute(
            f"SELECT * FROM jobs WHERE {where} ORDER BY seq {order} LIMIT ?", (*values, limit + 1)
        )
        jobs = [_job(row) for row in rows]
        return jobs[:limit], len(jobs) > limit

    def claim(self, instance: str, worker: str) -> Job | None:
        """The oldest queued job, now this worker's; None when none waits."""
        with self._transaction() as db:
            row = db.execute(
                "SELECT id FROM jobs WHERE status = 'queued' AND deleted = 0 ORDER BY seq LIMIT 1"
            ).fetchone()
            if row is None:
                return None
            db.execute(
                "UPDATE jobs SET status = 'in_progress', progress = 0, instance = ?, worker = ?, "
                "attempts = attempts + 1 WHERE id = ?",
                (instance, worker, row["id"]),
            )
        return self.get(row["id"], deleted=True)

    def recover(self, instance: str) -> list[str]:
        """Jobs an earlier server was running when it died: queued again, or failed after MAX_ATTEMPTS.
        Returns the ids that failed."""
        with self._transaction() as db:
            stale = "status = 'in_progress' AND (instance IS NULL OR instance != ?)"
            failed = [
                row["id"]
                for row in db.execute(
                    f"SELECT id FROM jobs WHERE {stale} AND attempts >= ?", (instance, MAX_ATTEMPTS)
                )
            ]
            db.execute(
                f"UPDATE jobs SET status = 'failed', completed_at = ?, error_code = 'server_stopped', "
                f"error_message = ? WHERE {stale} AND attempts >= ?",
                (
                    int(time.time()),
                    f"the server stopped {MAX_ATTEMPTS} times while running this job; it is not run again",
                    instance,
                    MAX_ATTEMPTS,
                ),
            )
            db.execute(f"UPDATE jobs SET status = 'queued', progress = 0 WHERE {stale}", (instance,))
        return failed

    def set_progress(self, job_id: str, progress: int) -> None:
        self._connection().execute("UPDATE jobs SET progress = ? WHERE id = ?", (progress, job_id))

    def complete(self, job_id: str) -> None:
        self._connection().execute(
            "UPDATE jobs SET status = 'completed', progress = 100, completed_at = ? WHERE id = ?",
            (int(time.time()), job_id),
        )

    def fail(self, job_id: str, code: str, message: str) -> None:
        self._connection().execute(
            "UPDATE jobs SET status = 'failed', completed_at = ?, error_code = ?, error_message = ? "
            "WHERE id = ?",
            (int(time.time()), code, message, job_id),
        )

    def requeue(self, job_id: str) -> None:
        """A job a draining worker gave back before it began (it runs on the next start)."""
        self._connection().execute(
            "UPDATE jobs SET status = 'queued', progress = 0, attempts = attempts - 1 WHERE id = ?", (job_id,)
        )

    def mark_deleted(self, job_id: str) -> Job | None:
        """Hide the job (its worker, if running, stops it); the job as it was, or None if unknown."""
        with self._transaction() as db:
            row = db.execute("SELECT * FROM jobs WHERE id = ? AND deleted = 0", (job_id,)).fetchone()
            if row is None:
                return None
            db.execute("UPDATE jobs SET deleted = 1 WHERE id = ?", (job_id,))
        return _job(row)

    def is_deleted(self, job_id: str) -> bool:
        row = self._connection().execute("SELECT deleted FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return row is None or bool(row["deleted"])

    def remove(self, job_id: str) -> None:
        with self._transaction() as db:
            db.execute("DELETE FROM jobs WHERE id = ?", (job_id,))
            db.execute("DELETE FROM prompts WHERE job = ?", (job_id,))

    def deleted_ids(self) -> list[str]:
        """Jobs deleted that no worker is running (a queued one, or one whose server died)."""
        rows = self._connection().execute("SELECT id FROM jobs WHERE deleted = 1 AND status != 'in_progress'")
        return [row["id"] for row in rows]

    def add_prompt(self, job_id: str, prompt: str) -> None:
        self._connection().execute("INSERT INTO prompts (job, prompt) VALUES (?, ?)", (job_id, prompt))

    def take_prompts(self, job_id: str, chunk: int) -> list[str]:
        """The steering prompts sent since the last call, oldest first, now taken before `chunk`."""
        with self._transaction() as db:
            rows = db.execute(
                "SELECT seq, prompt FROM prompts WHERE job = ? AND taken = 0 ORDER BY seq", (job_id,)
            ).fetchall()
            db.execute("UPDATE prompts SET taken = 1, chunk = ? WHERE job = ? AND taken = 0", (chunk, job_id))
        return [row["prompt"] for row in rows]

    def taken_prompts(self, job_id: str) -> dict[int, list[str]]:
        """The steering prompts an earlier run of the job took, by the chunk they were taken before."""
        rows = self._connection().execute(
            "SELECT chunk, prompt FROM prompts WHERE job = ? AND taken = 1 AND chunk IS NOT NULL "
            "ORDER BY seq",
            (job_id,),
        )
        taken: dict[int, list[str]] = {}
        for row in rows:
            taken.setdefault(row["chunk"], []).append(row["prompt"])
        return taken

    def worker_state(self, name: str, instance: str, state: str) -> None:
        self._connection().execute(
            "INSERT INTO workers (name, instance, state, seen) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (name) DO UPDATE SET instance = excluded.instance, state = excluded.state, "
            "seen = excluded.seen",
            (name, instance, state, time.time()),
        )

    def ready_workers(self, instance: str) -> int:
        """This server's workers that have loaded the model (a rank that dies stops them all)."""
        row = (
            self._connection()
            .execute("SELECT COUNT(*) FROM workers WHERE instance = ? AND state = 'ready'", (instance,))
            .fetchone()
        )
        return row[0]

    def close(self) -> None:
        db = getattr(self._local, "db", None)
        if db is not None:
            db.close()
            self._local.db = None


def _job(row: sqlite3.Row) -> Job:
    values = dict(row)
    values["options"] = json.loads(values["options"])
    values["stream"], values["deleted"] = bool(values["stream"]), bool(values["deleted"])
    return Job(**values)
