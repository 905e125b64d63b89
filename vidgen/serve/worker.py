"""A worker: loads the model once, then claims jobs from the store one at a time and runs them with the
functions `vidgen t2v` and `vidgen stream` run (vidgen.app.run.generate, vidgen.app.stream.stream_loaded).

One worker per device: a thread of the server (the HTTP loop answers while it generates), or under
torchrun one per rank. A stream's steering prompts come from the store at each chunk boundary, exactly
as lines typed into `vidgen stream --live` come from stdin (vidgen.ui.live_prompts.LiveSchedule). To
drain (SIGTERM), a worker takes no new job; a running stream ends at its next chunk boundary as the end
of --live input ends it, any other job finishes.
"""

import shutil
import threading
import traceback
from dataclasses import replace
from pathlib import Path
from typing import Any

from vidgen.core.errors import INTERRUPTED, OUT_OF_MEMORY, USAGE, WRITE_FAILED, VidgenError
from vidgen.core.progress import Silent
from vidgen.serve import plans
from vidgen.serve.progress import Cancelled, JobProgress
from vidgen.serve.store import Job, Store
from vidgen.ui import console
from vidgen.validate.common import Plan

IDLE_WAIT = 0.5  # seconds between looks at the queue when no POST wakes the worker (other ranks' jobs)
ERROR_CODES = {USAGE: "invalid_request", OUT_OF_MEMORY: "out_of_memory", WRITE_FAILED: "write_failed"}


class Steering:
    """The prompts sent to a running stream, as `LiveSchedule` takes lines from a `LineReader`: every
    line since the last chunk; None (the end of input) once the server drains.

    LiveSchedule takes once before each chunk, from chunk 1 on, in order: the n-th take is chunk n's, and
    the store keeps that chunk with the prompts taken. A stream run again (its server was killed) gets
    the prompts its earlier run took at the same chunks, so it makes the video that was steered; prompts
    sent but not taken then are taken at the first chunk after those."""

    def __init__(self, store: Store, job_id: str, draining: threading.Event) -> None:
        self.store, self.job_id, self.draining = store, job_id, draining
        self.replay = store.taken_prompts(job_id)
        self.chunk = 0  # the chunk the last take was for

    def take(self) -> list[str | None]:
        self.chunk += 1
        if self.chunk <= max(self.replay, default=0):
            lines: list[str | None] = list(self.replay.get(self.chunk, []))
        else:
            lines = list(self.store.take_prompts(self.job_id, self.chunk))
        return [*lines, None] if self.draining.is_set() else lines


class Worker:
    """Runs jobs on one device; `start()` loads the model on its own thread."""

    def __init__(
        self, store: Store, folder: Path, defaults: dict[str, Any], instance: str, name: str = "worker-0"
    ) -> None:
        self.store, self.folder, self.defaults = store, folder, defaults
        self.instance, self.name = instance, name
        self.state = "loading"  # loading | ready | failed | stopped
        self.error: str | None = None
        self.draining = threading.Event()
        self.wake = threading.Event()  # set by POST: a job is waiting
        self._thread = threading.Thread(target=self.run, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def is_alive(self) -> bool:
        return self._thread.is_alive()

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    def drain(self) -> None:
        self.draining.set()
        self.wake.set()

    def run(self) -> None:
        self.store.worker_state(self.name, self.instance, "loading")
        try:
            self._load()
        except Exception as error:  # the server stays up and says why (GET /health, 503s)
            detail = str(error) if isinstance(error, VidgenError) else f"{type(error).__name__}: {error}"
            if not isinstance(error, VidgenError):
                console.error(traceback.format_exc().rstrip())
            self._fail(f"the model failed to load: {detail}")
            return
        self._set_state("ready")
        try:
            self._take_jobs()
        except Exception as error:  # the queue itself failed (the database): say so, take no more jobs
            console.error(traceback.format_exc().rstrip())
            self._fail(f"the worker stopped taking jobs: {type(error).__name__}: {error}")
            return
        self._set_state("stopped")

    def _take_jobs(self) -> None:
        while not self.draining.is_set():
            self._remove_deleted()
            job = self.store.claim(self.instance, self.name)
            if job is None:
                self.wake.wait(IDLE_WAIT)
                self.wake.clear()
                continue
            self.run_job(job)

    def _fail(self, error: str) -> None:
        """Why this worker runs no jobs, for GET /health and every POST's 503, and on stderr."""
        self.error = error
        self.state = "failed"  # first: the store may be what failed
        console.error(f"{self.name}: {error}")
        try:
            self.store.worker_state(self.name, self.instance, "failed")
        except Exception as store_error:
            console.error(f"{self.name}: could not record that in the job database: {store_error}")

    def _set_state(self, state: str) -> None:
        self.state = state
        self.store.worker_state(self.name, self.instance, state)

    def _load(self) -> None:
        """The model loaded once, for a video of the server's default size (the memory plan's guess)."""
        console.quiet_libraries()
        from vidgen.app import run  # torch and the pipelines: only once the server is up
        from vidgen.families import registry

        given = {key: value for key, value in self.defaults.items() if key in plans.OPTION_NAMES}
        options = {**given, "prompt": "load", "mode": "t2v", "seed": 0}
        plan = plans.plan_job(options, False, self.folder, "load", overwrite=True)
        if plan.runtime.device.startswith("cuda:"):
            import torch

            torch.cuda.set_device(plan.runtime.device)
        self.fetched = run.fetch(plan.source, {})
        family = registry.family(plan.preset.family)
        self.loaded, self.runtime = run.load(family, self.fetched, plan.runtime, plan.request, Silent(), {})

    def run_job(self, job: Job) -> None:
        """Plan the job again from its stored options, generate, record how it ended."""
        try:
            self._generate(job)
        except Cancelled:
            pass
        except VidgenError as error:
            if not self.store.is_deleted(job.id):
                code = "interrupted" if error.exit_code == INTERRUPTED else ERROR_CODES.get(error.exit_code)
                self.store.fail(job.id, code or "generation_failed", str(error))
        except Exception as error:  # a bug or a device fault fails its job, not the server
            console.error(traceback.format_exc().rstrip())
            self.store.fail(job.id, "internal_error", f"{type(error).__name__}: {error}")
        else:
            self.store.complete(job.id)
        if self.store.is_deleted(job.id):
            remove_files(self.folder, job.id)
            self.store.remove(job.id)

    def _generate(self, job: Job) -> None:
        from vidgen.app import run, stream

        if job.stream:
            planned = plans.stream_plan(job.options, self.folder, job.id)
            planned = replace(planned, plan=self._on_loaded(planned.plan))
            progress = JobProgress(self.store, job.id, planned.chunks)
            steering = Steering(self.store, job.id, self.draining)
            stream.stream_loaded(planned, self.fetched, self.loaded, progress, {}, live=steering)
            return
        plan = self._on_loaded(plans.plan_job(job.options, False, self.folder, job.id, overwrite=True))
        run.generate(plan, self.fetched, self.loaded, JobProgress(self.store, job.id), {})

    def _on_loaded(self, plan: Plan) -> Plan:
        """The job's plan on the runtime the model was loaded with (its memory plan, its device)."""
        return replace(plan, runtime=self.runtime)

    def _remove_deleted(self) -> None:
        """Deleted jobs no worker runs: their files and rows go."""
        for job_id in self.store.deleted_ids():
            remove_files(self.folder, job_id)
            self.store.remove(job_id)


def remove_files(folder: Path, job_id: str) -> None:
    """Everything the job wrote or was given: the video, its sidecar, a stream's prompts, the upload,
    and partial files a killed run left."""
    video = plans.video_path(folder, job_id)
    for path in (
        video,
        video.with_name(video.name + ".json"),
        video.with_name(video.name + ".prompts.csv"),
        plans.upload_path(folder, job_id),
    ):
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    for partial in folder.glob(f".{job_id}.mp4*"):
        partial.unlink(missing_ok=True)
