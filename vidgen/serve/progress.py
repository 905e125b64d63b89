"""A job's progress as the API reports it (0-100, in the database), and where a deleted job stops.

The pipelines report stages and steps (vidgen.core.progress); a stream also reports each chunk written.
The percentage counts denoising steps: of the one denoise stage, or of every chunk of a stream. A
DELETE is seen here, at the next step: the job stops at once, as Ctrl-C stops a run (a stream keeps
its finished chunks until the worker removes the files).
"""

import re
import time

from vidgen.core.prompt_schedule import ChunkText
from vidgen.serve.store import Store
from vidgen.ui import console

CHUNK_STAGE = re.compile(r"chunk (\d+)/(\d+)")
CHECK_EVERY = 0.2  # seconds between looks at whether the job was deleted


class Cancelled(KeyboardInterrupt):
    """The job was deleted while it ran: it stops where Ctrl-C would stop it."""


class JobProgress:
    """vidgen.core.progress.Progress and a stream's extras, writing the percentage to the store."""

    def __init__(self, store: Store, job_id: str, chunks: int = 0) -> None:
        self.store, self.job_id, self.chunks = store, job_id, chunks
        self._done, self._total, self._chunk = 0, 0, 0
        self._percent = 0
        self._checked = 0.0

    # vidgen.core.progress.Progress
    def start_stage(self, name: str, total: int | None = None) -> None:
        self._check_cancelled()
        if not total:
            return
        self._done, self._total = 0, total
        found = CHUNK_STAGE.fullmatch(name)
        if found:
            self._chunk, self.chunks = int(found.group(1)) - 1, int(found.group(2))

    def advance(self, steps: int = 1) -> None:
        self._done += steps
        if self._total:
            fraction = self._done / self._total
            self._report((self._chunk + fraction) / self.chunks if self.chunks else fraction)
        self._check_cancelled()

    def end_stage(self) -> None:
        pass

    def note(self, line: str) -> None:
        pass

    # a stream's (vidgen.ui.stream_progress.StreamProgress)
    def chunk_written(self, chunks_done: int, throughput: object) -> None:
        if self.chunks:
            self._report(chunks_done / self.chunks)

    def following(self, text: ChunkText, chunk: int) -> None:
        pass

    def prompt_taken(self, chunk: int, chunks: int, prompt: str) -> None:
        pass

    def live_warning(self, message: str) -> None:
        console.warning(f"{self.job_id}: {message}")

    def _report(self, fraction: float) -> None:
        """Up to 99: 100 is for a job written and recorded."""
        percent = min(int(fraction * 100), 99)
        if percent > self._percent:
            self._percent = percent
            self.store.set_progress(self.job_id, percent)

    def _check_cancelled(self) -> None:
        now = time.monotonic()
        if now - self._checked < CHECK_EVERY:
            return
        self._checked = now
        if self.store.is_deleted(self.job_id):
            raise Cancelled
