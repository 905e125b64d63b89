"""`vidgen batch`: check every job, load the model once, run this rank's share, record each job.

The order is the single run's, stretched over many jobs: every line is checked before any weights load
(a bad line is reported with its number and becomes a failed record; it never stops the others), then
the model loads once, then each job generates and writes atomically and its record is appended to the
manifest before the next starts. Prompt embeddings are cached across jobs and dropped after the last
job that uses them.
"""

import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from vidgen.app.batch.jobs import Job, job_files, parse_jobs, plan_job, prompts, read_job_file
from vidgen.app.batch.lock import group_id, outdir_lock
from vidgen.app.batch.manifest import (
    ManifestWriter,
    Record,
    is_done,
    latest,
    manifest_name,
    now,
    repair,
    resolved_settings,
    torn_names,
)
from vidgen.app.batch.progress import BatchProgress
from vidgen.app.batch.report import Report, line_list, merge
from vidgen.app.prepare import check_guidance_2, resolve_model
from vidgen.app.summary import levers
from vidgen.app.summary import settings as request_settings
from vidgen.core.errors import INTERRUPTED, OUT_OF_MEMORY, VidgenError
from vidgen.core.request import Runtime
from vidgen.families import registry
from vidgen.runtime.ranks import Rank, gather
from vidgen.ui import console
from vidgen.validate.common import InputReader, Model, Options, Plan, check_flow_shift, check_path_text
from vidgen.validate.limits import check_numbers
from vidgen.validate.runtime import build_runtime, dtype_name, resolve_device
from vidgen.weights.presets import Preset, load_presets
from vidgen.weights.sources import parse_model

if TYPE_CHECKING:  # transformers, which the text stage imports, takes seconds to import
    from vidgen.stages.text import TextCache

# Options that set how the one model runs, for every job.
RUNTIME_OPTIONS = ("dtype", "offload", "quantize", "vae_tiling", "attention", "compile", "cache")
OPTION_FIELDS = Options.__dataclass_fields__


@dataclass(frozen=True)
class BatchOptions:
    jobs: str  # a JSONL or CSV file, or "-" for standard input
    outdir: str
    # The command line's options by Options field name (model, prompt, seed, ..., device, dtype, format);
    # None means not given. They are the defaults of every job.
    defaults: dict[str, Any]
    mode: str | None = None  # the jobs' mode unless they set one; None: the model's first mode
    dry_run: bool = False
    overwrite: bool = False  # run every job again, replacing what earlier runs wrote
    quiet: bool = False


@dataclass(frozen=True)
class Batch:
    """The checked batch: every job of the file, with what is wrong with each, before any weights load."""

    rank: Rank
    model: Model
    runtime: Runtime
    presets: Mapping[str, Preset]
    outdir: Path
    jobs: list[Job]
    standing: dict[str, Record]  # the manifest's latest record per job name
    torn: set[str]  # jobs whose record a crash tore mid-write: their files are the batch's own
    overwrite: bool
    label: str  # the job file as messages name it
    notes: tuple[str, ...] = ()

    def done(self, job: Job) -> bool:
        """Finished by an earlier run with the settings it asks for now, and its output still there."""
        record = self.standing.get(job.name)
        return not self.overwrite and is_done(record, job.spec, job.resolved, self.outdir)

    def share(self) -> list[Job]:
        return [job for index, job in enumerate(self.jobs) if self.rank.takes(index)]


def run_batch(options: BatchOptions, stdin: TextIO | None = None) -> Report:
    """Check every job, then (unless a dry run) run this rank's share; rank 0's report covers all ranks."""
    if options.dry_run:
        batch = check_batch(options, stdin)
        if batch.rank.speaks:
            show_problems(batch, options.quiet)
        return dry_run_report(batch)
    # Held from before the manifest is read until every rank is done: one batch per OUTDIR.
    with outdir_lock(_outdir(options.outdir), group_id(Rank.from_env())):
        return _run_locked(options, stdin)


def _run_locked(options: BatchOptions, stdin: TextIO | None) -> Report:
    batch = check_batch(options, stdin)
    if batch.rank.speaks:
        show_problems(batch, options.quiet)
    report = Report(jobs=len(batch.share()), outdir=str(batch.outdir))
    started = time.perf_counter()
    try:
        run_share(batch, report, options.quiet)
    except KeyboardInterrupt:
        raise VidgenError(
            f"interrupted; so far {report.ok} ok, {report.failed} failed, {report.skipped} skipped",
            f"finished jobs are in {batch.outdir / manifest_name(batch.rank.rank, batch.rank.world_size)}; "
            "run the same command again to resume",
            exit_code=INTERRUPTED,
        ) from None
    report.seconds = time.perf_counter() - started
    reports = gather(batch.rank, report)
    return merge(reports) if reports else Report(speaks=False)


def check_batch(options: BatchOptions, stdin: TextIO | None) -> Batch:
    """The model's configs, the runtime and every job, checked; raises VidgenError for the whole batch."""
    rank = Rank.from_env()
    presets = load_presets()
    defaults = options.defaults
    source = parse_model(defaults["model"], presets)
    # The command line's numbers are every job's defaults: a bad one is one mistake, not one per job.
    check_numbers(Options(mode="", **{key: value for key, value in defaults.items() if key in OPTION_FIELDS}))
    device = resolve_device(rank.device(resolve_device(defaults.get("device"))))
    outdir = _outdir(options.outdir)
    model = resolve_model(source, presets, preset_name=defaults.get("preset"))
    # Command-line options the model cannot take are one mistake, not one per job (a job's own keys
    # fail that job alone).
    check_flow_shift(defaults.get("flow_shift"), registry.family(model.info.family))
    check_guidance_2(defaults.get("guidance_2"), model.info, defaults["model"])
    notes: list[str] = list(model.notes)
    given = {key: defaults[key] for key in RUNTIME_OPTIONS if defaults.get(key) is not None}
    runtime = build_runtime(Options(mode="", model=source.spec, **given), model.preset, device, notes)
    file = read_job_file(options.jobs, stdin)
    jobs = parse_jobs(file, defaults, options.mode or model.info.modes[0])
    standing = latest(outdir) if outdir.is_dir() else {}
    torn = torn_names(outdir) if outdir.is_dir() else set()
    batch = Batch(rank, model, runtime, presets, outdir, jobs, standing, torn, options.overwrite, file.label)
    reader = InputReader()  # jobs that share an input file read it once
    checked = [check_job(batch, job, notes, reader) for job in jobs]
    return replace(batch, jobs=checked, notes=tuple(notes))


def _outdir(path: str) -> Path:
    outdir = Path(path).expanduser()
    check_path_text(outdir, "the output folder")
    if outdir.exists() and not outdir.is_dir():
        raise VidgenError(f"'{outdir}' is a file, not a folder", "pass a folder for the outputs with -o")
    return outdir


def check_job(batch: Batch, job: Job, notes: list[str], reader: InputReader | None = None) -> Job:
    """The job with its resolved settings, or the job marked failed with the reason."""
    if job.error is not None:
        return job
    try:
        plan = plan_job(job, batch.model, batch.runtime, batch.outdir, batch.presets, notes, reader)
    except VidgenError as error:
        # Finished as written: its output stands even if an input has gone since.
        return job if batch.done(job) else job.failed(str(error))
    except Exception as error:  # a value no check foresaw must fail its own line, not the whole batch
        return job.failed(f"cannot check this job: {type(error).__name__}: {error}")
    job = replace(job, resolved=resolved_settings(settings(plan), job.spec or {}))
    return job if batch.done(job) else _check_not_foreign(batch, job)


def _check_not_foreign(batch: Batch, job: Job) -> Job:
    """An output the batch's manifest does not know is someone else's file: not replaced silently."""
    if batch.overwrite or job.name in batch.standing or job.name in batch.torn:
        return job
    existing = [name for name in job_files(job) if (batch.outdir / name).exists()]
    if existing:
        return job.failed(
            f"'{batch.outdir / existing[0]}' already exists and this batch's manifest did not make it "
            "(pass --overwrite to replace it, or choose another name)"
        )
    return job


def show_problems(batch: Batch, quiet: bool) -> None:
    """Every bad line, once per distinct reason; then notes, unless quiet."""
    reasons: dict[str, list[int]] = {}
    for job in batch.jobs:
        if job.error is not None:
            reasons.setdefault(job.error, []).append(job.line)
    for reason, lines in reasons.items():
        console.error(f"{batch.label}:{line_list(lines)}: {reason}")
    for line in () if quiet else dict.fromkeys(batch.notes):
        console.note(line)


def dry_run_report(batch: Batch) -> Report:
    report = Report(jobs=len(batch.jobs), outdir=str(batch.outdir), dry_run=True, speaks=batch.rank.speaks)
    for job in batch.jobs:
        if job.error is not None:
            report.add(_failed(job, job.error, batch.rank.rank))
        elif batch.done(job):
            report.skipped += 1
        else:
            report.to_run += 1
    return report


def run_share(batch: Batch, report: Report, quiet: bool) -> None:
    """Record this rank's bad and done jobs, then load the model (if any job is left) and run the rest."""
    share = batch.share()
    to_run = [job for job in share if job.error is None and not batch.done(job)]
    try:
        batch.outdir.mkdir(parents=True, exist_ok=True)
        path = batch.outdir / manifest_name(batch.rank.rank, batch.rank.world_size)
        # Each rank mends only its own part: the others may be writing theirs.
        if repair(path) and not quiet:
            console.note(f"dropped the torn lines of {path}; their jobs run again")
        manifest = ManifestWriter(path)
    except OSError as error:
        raise VidgenError(
            f"cannot write to '{batch.outdir}': {error.strerror or error}", "choose another -o"
        ) from None
    label = f"rank {batch.rank.rank} " if batch.rank.distributed else ""
    with manifest, BatchProgress(len(to_run), quiet=quiet, label=label) as progress:
        for job in share:
            if job.error is not None:
                _record(manifest, report, _failed(job, job.error, batch.rank.rank))
            elif batch.done(job):
                _record(manifest, report, _skipped(job, batch.standing[job.name], batch.rank.rank))
        if to_run:
            _run_jobs(batch, to_run, manifest, report, progress)


def _run_jobs(
    batch: Batch, jobs: list[Job], manifest: ManifestWriter, report: Report, progress: BatchProgress
) -> None:
    # Imported here: torch, diffusers and the model code take seconds, and checking runs without them.
    console.quiet_libraries()  # their bars (weights loading) would break up ours; they log on import
    from vidgen.app import run
    from vidgen.stages.text import TextCache

    _use_device(batch.runtime)
    fetched = run.fetch(batch.model.source, {})
    jobs = sorted(jobs, key=_lora_set)  # stable: each LoRA set is fused once, its jobs in file order
    # Keeps no pixels (each job reads its inputs again), only each distinct --lora's check: a LoRA
    # shared by many jobs is read and hashed once.
    reader = InputReader(max_bytes=0)
    largest = plan_job(
        _largest(batch, jobs), batch.model, batch.runtime, batch.outdir, batch.presets, reader=reader
    )
    first = plan_job(jobs[0], batch.model, batch.runtime, batch.outdir, batch.presets, reader=reader)
    loaded, runtime = run.load(batch.model.family, fetched, first.runtime, largest.request, progress, {})
    runtime = replace(runtime, loras=())  # each job's plan brings its own set
    batch = replace(batch, runtime=runtime)
    progress.start_jobs()
    cache, uses = TextCache(), Counter(prompts(jobs))
    for job in jobs:
        # Recorded before anything is written: should the batch die before the job's result is
        # recorded (a kill, a full disk), the next run knows the job's files are its own.
        manifest.write(
            Record(name=job.name, line=job.line, status="started", job=job.spec, rank=batch.rank.rank)
        )
        record = _run_job(
            batch,
            job,
            progress,
            reader,
            lambda plan: run.generate(
                plan, fetched, run.with_loras(loaded, plan.runtime), progress, {}, cache
            ),
        )
        _record(manifest, report, record)
        progress.end_job(record)
        _forget_unused(cache, uses, prompts([job]))
    report.cache_hits, report.cache_misses = cache.hits, cache.misses


def _lora_set(job: Job) -> tuple[str, ...]:
    """What a job's LoRAs are as written (its options' or, when it names none, the preset's)."""
    lora = job.options.lora if job.options else None
    return tuple(lora) if lora else ()


def _largest(batch: Batch, jobs: list[Job]) -> Job:
    """The job with the most pixels: the memory plan is made once, for the batch's biggest video."""
    preset = batch.model.preset

    def pixels(job: Job) -> int:
        options = job.options
        return (
            (options.height or preset.height)
            * (options.width or preset.width)
            * (options.frames or preset.frames)
        )

    return max(jobs, key=pixels)


def _run_job(
    batch: Batch, job: Job, progress: BatchProgress, reader: InputReader, generate: Callable[[Plan], Any]
) -> Record:
    """Plan (inputs are read again: holding every job's media would not fit), generate, write."""
    progress.start_job(job.name)
    started, plan = time.perf_counter(), None
    try:
        plan = plan_job(job, batch.model, batch.runtime, batch.outdir, batch.presets, reader=reader)
        # The batch replaces what its manifest says it wrote; anything else that took the name while
        # the batch ran (a `vidgen t2v -o OUTDIR/NAME.mp4`) is kept, and the job fails.
        mine = batch.overwrite or job.name in batch.standing or job.name in batch.torn
        plan = replace(plan, output=replace(plan.output, overwrite=mine))
        outcome = generate(plan)  # refits the transformer when the job's LoRA set is another
    except VidgenError as error:
        if error.exit_code == OUT_OF_MEMORY:
            _free_device_memory(batch.runtime)
        return _failed(job, str(error), batch.rank.rank, plan, time.perf_counter() - started)
    except Exception as error:  # a bug or a device fault in one job must not stop the others
        progress.print(traceback.format_exc().rstrip())
        return _failed(
            job, f"{type(error).__name__}: {error}", batch.rank.rank, plan, time.perf_counter() - started
        )
    for line in outcome.warnings:
        progress.print(f"warning: {job.name}: {line}")
    return Record(
        name=job.name,
        line=job.line,
        status="ok",
        output=job.output,
        seconds=round(time.perf_counter() - started, 3),
        job=job.spec,
        settings=settings(plan),
        warnings=outcome.warnings,
        rank=batch.rank.rank,
    )


def _forget_unused(cache: "TextCache", uses: Counter, used: Iterable[str]) -> None:
    """Drop the embeddings of prompts no later job of this rank encodes: the cache stays small."""
    for text in used:
        uses[text] -= 1
        if uses[text] == 0:
            cache.discard(text)


def _use_device(runtime: Runtime) -> None:
    """Make a numbered GPU the current one: torch.cuda calls without a device (synchronize) then use it
    rather than opening a context on GPU 0 from every rank."""
    import torch

    if runtime.device.startswith("cuda:"):
        torch.cuda.set_device(runtime.device)


def _free_device_memory(runtime: Runtime) -> None:
    """After running out of memory, hand the allocator's cached blocks back so the next job starts clean."""
    import torch

    if runtime.device.startswith("cuda"):
        torch.cuda.empty_cache()


def settings(plan: Plan) -> dict[str, Any]:
    """The generated video's settings for its record: what the sidecar says, without timings."""
    request, runtime = plan.request, plan.runtime
    return {
        "mode": request.mode,
        "prompt": request.prompt,
        "negative_prompt": request.negative_prompt,
        "seed": request.seed,
        **request_settings(plan),
        "model": plan.source.spec,
        "device": runtime.device,
        "dtype": dtype_name(runtime.dtype),
        "offload": runtime.offload,
        "quantize": runtime.quantize,
        "vae_tiling": runtime.vae_tiling,
        **levers(runtime),
    }


def _failed(
    job: Job, error: str, rank: int, plan: Plan | None = None, seconds: float | None = None
) -> Record:
    return Record(
        name=job.name,
        line=job.line,
        status="failed",
        error=error,
        seconds=None if seconds is None else round(seconds, 3),
        job=job.spec if job.options else job.given,  # a line that did not parse keeps what it said
        settings=settings(plan) if plan else None,
        rank=rank,
    )


def _skipped(job: Job, done: Record, rank: int) -> Record:
    """The record that made the job's output, carried forward: the latest record says where a job stands."""
    return replace(done, status="skipped", line=job.line, rank=rank, finished=now())


def _record(manifest: ManifestWriter, report: Report, record: Record) -> None:
    manifest.write(record)
    report.add(record)
