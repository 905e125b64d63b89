"""`vidgen stream`: generate a Helios video chunk by chunk, writing each chunk as soon as it is decoded.

The output grows under its final name (a fragmented MP4, a PNG folder, or MP4 on stdout), so it can be
watched while it grows and keeps every finished chunk if the run stops. Decoded frames are written and
dropped: memory does not grow with the video's length. The sidecar JSON appears with the first chunk and
is rewritten (atomically) after every chunk and when the stream ends, saying how it ended.

On a CUDA GPU with every model resident (no --offload), each chunk is decoded on a second CUDA stream
while the next one denoises, and written once the next one is queued (vidgen.stages.decode_ahead): more
frames per second, each chunk reaching the output about one chunk later. Stopping keeps every chunk
whose latents were final, as without the overlap.

With --live, prompts typed on stdin steer the chunks not started yet (vidgen.ui.live_prompts); the schedule
as it happened is kept beside the output as OUTPUT.prompts.csv, which the sidecar's command replays.

Ctrl-C (or SIGTERM, SIGHUP) stops generation at once; a chunk being written is finished first (the
signal is held for the few hundred milliseconds that takes), so the output always ends on a whole chunk.
"""

import json
import os
import shlex
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any, BinaryIO

import torch

from vidgen.app import run
from vidgen.app.prepare_stream import StreamPlan
from vidgen.app.summary import lever_flags, summarize
from vidgen.core.errors import INTERRUPTED, PIPE_CLOSED, WRITE_FAILED, VidgenError
from vidgen.core.prompt_schedule import ChunkText, Cue, prompt_csv, schedule
from vidgen.families import registry
from vidgen.io.partials import partial_name, remove_stale
from vidgen.io.stream_writer import ChunkWriter, Mp4Stream, PngStream
from vidgen.io.writer import remove_stale_partials, write_sidecar
from vidgen.runtime.levers import compiling, take_skip_count
from vidgen.runtime.parallel import outcome_speaker
from vidgen.ui.live_prompts import LineReader, LiveEnded, LiveSchedule
from vidgen.ui.signals import STOP_SIGNALS
from vidgen.ui.stream_progress import StreamProgress, Throughput
from vidgen.weights.sources import FetchedModel


@dataclass(frozen=True)
class StreamOutcome:
    summary: dict[str, Any]
    chunks: int  # chunks in the output
    frames: int
    throughput: Throughput
    sidecar: Path | None  # None for -o -


def stream_video(
    plan: StreamPlan, progress: StreamProgress, cache_dir: Path | None = None, live: LineReader | None = None
) -> StreamOutcome:
    """Load the model and stream the plan's video into its output; raises VidgenError (130 on Ctrl-C).
    `live` (with --live) gives the prompts typed while it runs."""
    family = registry.family(plan.plan.preset.family)
    timings: dict[str, float] = {}
    fetched = run.fetch(plan.plan.source, timings, cache_dir)
    model, runtime = run.load(family, fetched, plan.plan.runtime, plan.plan.request, progress, timings)
    plan = replace(plan, plan=replace(plan.plan, runtime=runtime))
    return stream_loaded(plan, fetched, model, progress, timings, live)


def stream_loaded(
    plan: StreamPlan,
    fetched: FetchedModel,
    model: Any,
    progress: StreamProgress,
    timings: dict[str, float],
    live: LineReader | None = None,
) -> StreamOutcome:
    """Stream the plan's video with a model already loaded (`vidgen serve` loads once for many streams);
    `live` is anything with LineReader's `take()`."""
    family = registry.family(plan.plan.preset.family)
    request, runtime = plan.plan.request, plan.plan.runtime
    chunked = family.stream_pipeline()
    settings = chunked.settings_for(request)
    steering = None
    if live is not None:
        too_long = partial(_too_long, model.tokenizer, request.max_sequence_length)
        steering = LiveSchedule(plan.cues, plan.interpolate_chunks, plan.chunks, live, progress, too_long)
    prompts = _shown(steering or schedule(plan.cues, plan.interpolate_chunks), progress)
    chunks = chunked.generate_chunks(
        model, request, settings, runtime, progress, prompts=prompts, decode_ahead=True
    )
    if not outcome_speaker():  # another torchrun rank: it denoises beside rank 0, which writes
        done = sum(1 for _ in chunks)
        return StreamOutcome({}, done, 0, Throughput(0, 0.0, request.fps), None)
    record = _Record(plan, fetched, timings, steering, model.transformer)
    # The MP4's metadata is written with the first chunk: the settings, as the stream starts.
    with (
        _video_out(plan, comment=json.dumps(record.summary("started", frames=0))) as writer,
        compiling(runtime, timings),
    ):
        return _write_chunks(plan, record, chunks, writer, progress)


def _shown(prompts: Callable[[int], ChunkText], progress: StreamProgress) -> Callable[[int], ChunkText]:
    """The schedule, telling the progress display what each chunk follows as it is asked for."""

    def text(chunk: int) -> ChunkText:
        chosen = prompts(chunk)
        progress.following(chosen, chunk)
        return chosen

    return text


def _too_long(tokenizer, max_tokens: int, prompt: str) -> str | None:
    """A typed prompt's problem, if the text encoder would cut it."""
    tokens = len(tokenizer(prompt, add_special_tokens=True).input_ids)
    if tokens <= max_tokens:
        return None
    return f"the prompt is {tokens} tokens; the model reads the first {max_tokens}, the rest is cut"


def _write_chunks(
    plan: StreamPlan, record: "_Record", chunks: Iterator, writer: ChunkWriter, progress: StreamProgress
) -> StreamOutcome:
    """Write each chunk as it comes; however the loop ends, leave the output and sidecar saying so."""
    ending = "done"
    try:
        for frames in chunks:
            with _stop_signals_held():  # a chunk and its record are written whole, or not at all
                writer.write(frames)
                outcome = record.save("running", writer.frames_written, chunk_done=True)
            del frames  # not kept while the next chunk generates
            progress.chunk_written(outcome.chunks, outcome.throughput)
    except LiveEnded:  # /quit or the end of input, between chunks: a clean end
        ending = "ended"
    except KeyboardInterrupt:
        ending = "interrupted"
    except torch.cuda.OutOfMemoryError:
        ending = "out of memory"
    except BrokenPipeError:
        if not plan.to_stdout:
            raise
        ending = "reader closed"
    except BaseException as error:
        if not run.is_cpu_out_of_memory(error):
            # The record is kept as far as the disk allows: on a full disk the sidecar keeps its last
            # state, and the error that stopped the stream is the one reported.
            with _stop_signals_ignored(), suppress(OSError):
                record.save("failed", writer.frames_written)
            raise
        ending = "out of memory on the CPU"
    with _stop_signals_ignored():  # the stream is ending already; a second Ctrl-C must not cut the record
        outcome = record.save(ending, writer.frames_written)
    error = _error_for(ending, plan, outcome)
    if error is not None:
        raise error
    return outcome


def _error_for(ending: str, plan: StreamPlan, outcome: StreamOutcome) -> VidgenError | None:
    """Ctrl-C and out-of-memory end the command with their exit codes, naming what was kept."""
    if ending.startswith("out of memory"):
        error = run.out_of_memory(plan.plan.runtime, on_cpu=ending.endswith("CPU"))
        if outcome.chunks:
            error.message += f"; {_kept(plan, outcome)}"
        return error
    if ending == "interrupted":
        kept = _kept(plan, outcome) if outcome.chunks else "no output was written"
        return VidgenError(f"interrupted; {kept}", exit_code=INTERRUPTED)
    if ending == "reader closed":  # the player quit: the usual end of `... -o - | player`
        return VidgenError(
            f"stopped: the program reading stdout closed it; {_kept(plan, outcome)}", exit_code=PIPE_CLOSED
        )
    return None


def _kept(plan: StreamPlan, outcome: StreamOutcome) -> str:
    where = "stdout got" if plan.to_stdout else f"{plan.plan.output.path} holds"
    seconds = outcome.frames / plan.plan.request.fps
    return (
        f"{where} {outcome.chunks} finished chunk{'s' * (outcome.chunks != 1)} of {plan.chunks} "
        f"({outcome.frames} frames, {seconds:.1f} s)"
    )


class _Record:
    """The stream's summary, kept current in the sidecar after every chunk and at the end."""

    def __init__(
        self,
        plan: StreamPlan,
        fetched: FetchedModel,
        timings: dict[str, float],
        steering: LiveSchedule | None = None,
        transformer: Any = None,
    ) -> None:
        self.plan, self.fetched, self.timings, self.steering = plan, fetched, timings, steering
        self.transformer = transformer
        self.start = time.perf_counter()
        self.chunks = 0
        self.cache: dict[str, Any] = {}  # the step cache's counts over every chunk so far (--cache)
        # --cache mag: the stored ratios the stream's loops read, and the schedules it measured itself
        self.mag_read: dict[str, list[float]] = {}
        self.mag_measured: set[str] = set()

    def _count_cache(self) -> None:
        """Add the transformer calls (and skipped calls) since the last save to the stream's total."""
        counts = take_skip_count(self.transformer)
        if counts is None:
            return
        if "replay_read" in counts:  # ratios this stream measured on an earlier chunk are not "read"
            read, measured = counts.pop("replay_read"), counts.pop("replay_measured")
            self.mag_read.update({key: r for key, r in read.items() if key not in self.mag_measured})
            self.mag_measured |= measured
        calls, skipped = counts.pop("calls"), counts.pop("skipped")
        if self.cache.get("ratios") == "measured":  # the mag cache measured on an earlier chunk
            counts["ratios"] = "measured"
        self.cache.update(
            counts, calls=self.cache.get("calls", 0) + calls, skipped=self.cache.get("skipped", 0) + skipped
        )

    def save(self, status: str, frames: int, chunk_done: bool = False) -> StreamOutcome:
        """Record the stream as it stands, `frames` in the output. A stream that never wrote a chunk
        leaves no sidecar either (and -o - has none)."""
        self.chunks += chunk_done
        self._count_cache()
        summary = self.summary(status, frames)
        sidecar = None
        if self.chunks and not self.plan.to_stdout:
            if self.steering is not None:  # first: the sidecar's command reads it
                _write_text(prompts_path(self.plan.plan.output.path), prompt_csv(self._cues(status)))
            sidecar = write_sidecar(self.plan.plan.output.path, summary)
        return StreamOutcome(summary, self.chunks, frames, self._throughput(frames), sidecar)

    def summary(self, status: str, frames: int) -> dict[str, Any]:
        """`status`: "started", "running", "done", "ended" (--live: /quit or the end of input),
        "interrupted", "out of memory" or "failed"."""
        plan, throughput = self.plan, self._throughput(frames)
        timings = {**self.timings, "generate": throughput.seconds}
        summary = summarize(plan.plan, self.fetched, frames, timings, [])
        summary["runtime"]["cache"].update(self.cache)
        summary["command"] = stream_command(self._replay(status, frames))
        summary["stream"] = {
            "status": status,
            "chunks": self.chunks,
            "chunks_planned": plan.chunks,
            "frames_per_second": round(throughput.frames_per_second, 3),
            "real_time_factor": round(throughput.real_time_factor, 3),
            "prompts": [{"chunk": cue.chunk, "prompt": cue.prompt} for cue in self._cues(status)],
            "interpolate_chunks": plan.interpolate_chunks,
            "live": plan.live,
        }
        if plan.to_stdout:
            summary["sidecar"] = None
        return summary

    def _cues(self, status: str) -> tuple[Cue, ...]:
        """The schedule as it happened: with --live, typed prompts included; once it ended early, none
        after the video's last chunk."""
        if self.steering is None:
            return self.plan.cues
        cues = self.steering.cues
        return tuple(cue for cue in cues if cue.chunk < max(self.chunks, 1)) if status == "ended" else cues

    def _ended_early(self, status: str) -> bool:
        """Whether the stream stopped for good before its last chunk, some chunks written."""
        return status not in ("started", "running", "done") and 0 < self.chunks < self.plan.chunks

    def _replay(self, status: str, frames: int) -> StreamPlan:
        """The plan a replay runs: a live stream's prompts from OUTPUT.prompts.csv, and once it ended
        early (/quit, Ctrl-C, ...), exactly the whole chunks it wrote (--whole-chunks: not cut to 4k+1)."""
        plan = self.plan
        if self.steering is not None and not plan.to_stdout:
            plan = replace(plan, prompt_file=str(prompts_path(plan.plan.output.path)))
        if plan.plan.runtime.cache == "mag":  # the stored ratios it read, or none: measured again
            output = None if plan.to_stdout else plan.plan.output.path
            plan = replace(plan, plan=run.with_mag_replay(plan.plan, self.mag_read, output))
        if self._ended_early(status):
            request = plan.plan.request
            settings = tuple(sorted({**dict(request.settings), "whole_chunks": True}.items()))
            request = replace(request, frames=frames, settings=settings)
            plan = replace(plan, plan=replace(plan.plan, request=request))
        return plan

    def _throughput(self, frames: int) -> Throughput:
        return Throughput(frames, time.perf_counter() - self.start, self.plan.plan.request.fps)


def stream_command(plan: StreamPlan) -> str:
    """A `vidgen stream` command line that makes the same video (given the same model and inputs)."""
    request, settings = plan.plan.request, dict(plan.plan.request.settings)
    words = ["vidgen", "stream", "--model", plan.plan.source.spec]
    if plan.prompt_file is not None:
        words += ["--prompt-file", plan.prompt_file, "--interpolate-chunks", str(plan.interpolate_chunks)]
    else:
        words += ["--prompt", request.prompt]
    if request.negative_prompt:
        words += ["--negative-prompt", request.negative_prompt]
    words += [f"--{name}={path}" for name, path in plan.plan.inputs.items()]
    words += [f"--seed={request.seed}", f"--guidance={request.guidance}"]
    if "pyramid_steps" in settings:
        words += ["--pyramid-steps=" + ",".join(map(str, settings["pyramid_steps"]))]
        words += ["--amplify-first-chunk" if settings["amplify_first_chunk"] else "--no-amplify-first-chunk"]
    else:
        words += [f"--steps={request.steps}"]
    words += [f"--height={request.height}", f"--width={request.width}", f"--frames={request.frames}"]
    if settings.get("whole_chunks"):
        words += ["--whole-chunks"]
    words += [
        f"--{name}" if value is True else f"--{name}={value}"
        for name, value in lever_flags(plan.plan.runtime)
    ]
    words += [f"--fps={request.fps}", f"--format={plan.plan.output.format}", "-o", str(plan.plan.output.path)]
    return shlex.join(words)


def prompts_path(output: Path) -> Path:
    """`cat.mp4` -> `cat.mp4.prompts.csv`: a live stream's schedule, a prompt file for --prompt-file."""
    return output.with_name(output.name + ".prompts.csv")


def _write_text(path: Path, text: str) -> None:
    """Replace `path` by `text` atomically: a reader sees the old file or the new one, never half."""
    hidden = partial_name(path)
    try:
        hidden.write_text(text, encoding="utf-8")
        os.replace(hidden, path)
    except BaseException:
        hidden.unlink(missing_ok=True)
        raise


@contextmanager
def _video_out(plan: StreamPlan, comment: str) -> Iterator[ChunkWriter]:
    """The writer for the plan's output, closed at the end (stdout is kept apart for the video).
    `comment` goes into the MP4's metadata, which is written with the first chunk."""
    output, fps = plan.plan.output, plan.plan.request.fps
    with ExitStack() as stack:
        if plan.to_stdout:
            writer: ChunkWriter = Mp4Stream(fps, comment, pipe=stack.enter_context(_stdout_for_video()))
        elif output.format == "png":
            writer = PngStream(output.path, replace=output.overwrite)
        else:
            writer = Mp4Stream(fps, comment, path=output.path, replace=output.overwrite)
        if not plan.to_stdout:
            remove_stale_partials(output.path)  # what a killed run left beside the same output
            if plan.live:
                remove_stale(prompts_path(output.path))
        stack.callback(writer.close)
        try:
            yield writer
        except FileExistsError:  # checked before generating, but another run wrote it first
            raise VidgenError(
                f"'{output.path}' already exists: another run wrote it while this one generated; it was "
                "left as it is",
                "pass --overwrite to replace it, or choose another name with -o",
                exit_code=WRITE_FAILED,
            ) from None
        except OSError as error:  # a full disk, a file-size limit: what was written stays playable
            where = "to stdout" if plan.to_stdout else f"'{output.path}'"
            frames, kept = writer.frames_written, ""
            if frames and not plan.to_stdout:
                kept = f"; it keeps the {frames} frames of the chunks finished before"
            raise VidgenError(
                f"writing {where} failed: {error.strerror or error}{kept}",
                "free some space or choose another -o",
                exit_code=WRITE_FAILED,
            ) from None


@contextmanager
def _stdout_for_video() -> Iterator[BinaryIO]:
    """Standard output for the video alone: anything else printing to it (a library's stray print)
    is sent to stderr meanwhile, so that the MP4 stream stays valid."""
    try:
        descriptor = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # not a real file (a test's captured stdout)
        yield sys.stdout.buffer
        return
    sys.stdout.flush()
    video = os.fdopen(os.dup(descriptor), "wb")
    saved = os.dup(descriptor)
    os.dup2(sys.stderr.fileno(), descriptor)
    try:
        yield video
    finally:
        with suppress(BrokenPipeError):  # the reader went away: what is still buffered has nowhere to go
            video.close()
        os.dup2(saved, descriptor)
        os.close(saved)


@contextmanager
def _stop_signals_held() -> Iterator[None]:
    """Hold Ctrl-C, SIGTERM and SIGHUP until the block is done (they are delivered right after), so a
    chunk is never half written. Only the main thread sees signals; elsewhere this does nothing."""
    held = hasattr(signal, "pthread_sigmask") and _in_main_thread()
    if held:
        signal.pthread_sigmask(signal.SIG_BLOCK, set(STOP_SIGNALS))
    try:
        yield
    finally:
        if held:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, set(STOP_SIGNALS))


@contextmanager
def _stop_signals_ignored() -> Iterator[None]:
    """Ignore Ctrl-C, SIGTERM and SIGHUP for the block (main thread only: elsewhere signals never
    arrive)."""
    if not _in_main_thread():
        yield
        return
    previous = {number: signal.signal(number, signal.SIG_IGN) for number in STOP_SIGNALS}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()
