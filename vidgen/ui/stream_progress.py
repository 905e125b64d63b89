"""What `vidgen stream` shows on stderr: chunks done of total, generated frames per second, the
real-time factor (seconds of video per second of wall time; above 1 the video outruns playback), and the
prompt the chunk follows; with --live, a line for each typed prompt taken and the chunk it starts at.

On a terminal, one rich line for the chunks (advancing with each denoising step) under a line per
setup stage; anywhere else, one plain line per stage and per chunk, so logs stay short.
"""

import time
from dataclasses import dataclass

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from vidgen.core.progress import Silent
from vidgen.core.prompt_schedule import ChunkText
from vidgen.ui.console import warning

PROMPT_SHOWN = 40  # characters of a prompt in a progress line


@dataclass(frozen=True)
class Throughput:
    """How fast a stream goes: `frames` written `seconds` after generation began."""

    frames: int
    seconds: float
    fps: int  # of the video

    @property
    def frames_per_second(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    @property
    def real_time_factor(self) -> float:
        return self.frames_per_second / self.fps

    def describe(self) -> str:
        return f"{self.frames_per_second:.1f} frames/s, {self.real_time_factor:.2f}x real time"


class StreamProgress:
    """`vidgen.core.progress.Progress` plus `chunk_written`, on stderr; use as a context manager."""

    def __init__(self, chunks: int, console: Console | None = None) -> None:
        self.console = console or Console(stderr=True)
        self.chunks = chunks
        self._bars: Progress | None = None
        self._stage: TaskID | None = None
        self._chunk_task: TaskID | None = None
        self._name, self._steps, self._started = "", 0, 0.0
        self._prompt = ""  # what the chunk being made follows
        # What each chunk not yet written follows: with the decode beside the next chunk's denoising, a
        # chunk is written after the next one has started.
        self._prompts: dict[int, str] = {}

    def __enter__(self) -> "StreamProgress":
        return self

    def __exit__(self, *exc_info) -> None:
        if self._bars is not None:
            self._bars.stop()

    def note(self, line: str) -> None:
        self.console.print(f"note: {line}", highlight=False, markup=False, soft_wrap=True)

    def start_stage(self, name: str, total: int | None = None) -> None:
        self._name, self._steps, self._started = name, total or 0, time.perf_counter()
        # The Helios generator names its per-chunk stages "chunk k/n": those advance the chunks line.
        if name.startswith("chunk "):
            if self._live() and self._chunk_task is None:
                self._chunk_task = self._live().add_task("chunks", total=self.chunks, rate="", prompt="")
            if self._live():
                self._live().update(self._chunk_task, prompt=self._prompt)
        elif self._live():
            self._stage = self._live().add_task(name, total=total or 1, rate="", prompt="")

    def advance(self, steps: int = 1) -> None:
        if not self._live():
            return
        if self._name.startswith("chunk ") and self._chunk_task is not None and self._steps:
            self._live().advance(self._chunk_task, steps / self._steps * 0.999)  # the write completes it
        elif self._stage is not None:
            self._live().advance(self._stage, steps)

    def end_stage(self) -> None:
        if self._name.startswith("chunk "):
            return  # reported by chunk_written, once the chunk is in the output
        if self._live() and self._stage is not None:
            self._live().update(self._stage, completed=self._live().tasks[self._stage].total)
            self._stage = None
        elif not self._live():
            seconds = time.perf_counter() - self._started
            self.console.print(f"{self._name}: done in {seconds:.1f} s", highlight=False, soft_wrap=True)

    def chunk_written(self, chunks_done: int, throughput: Throughput) -> None:
        """Chunk `chunks_done` is in the output; `throughput` counts from the start of generation."""
        prompt = self._prompts.pop(chunks_done - 1, self._prompt)
        if self._live() and self._chunk_task is not None:
            # The bar also counts the next chunk's denoising steps, which may have begun: never back.
            completed = max(chunks_done, self._live().tasks[self._chunk_task].completed)
            self._live().update(self._chunk_task, completed=completed, rate=throughput.describe())
            return
        seconds_of_video = throughput.frames / throughput.fps
        self.console.print(
            f"chunk {chunks_done}/{self.chunks}: {throughput.frames} frames ({seconds_of_video:.1f} s of "
            f"video) in {throughput.seconds:.1f} s, {throughput.describe()}; {prompt}",
            highlight=False,
            markup=False,
            soft_wrap=True,  # one line per chunk in a log, however long
        )

    def following(self, text: ChunkText, chunk: int) -> None:
        """Chunk `chunk` (0-based), about to start, follows `text` (a prompt, or a blend of two)."""
        self._prompt = self._prompts[chunk] = describe_text(text)

    def prompt_taken(self, chunk: int, chunks: int, prompt: str) -> None:
        """--live: a typed prompt will condition chunks from `chunk` (0-based) on."""
        self.console.print(
            f"live: chunk {chunk + 1}/{chunks} on follows {_short(prompt)}",
            highlight=False,
            markup=False,
            soft_wrap=True,
        )

    def live_warning(self, message: str) -> None:
        self.console.print(f"warning: {message}", highlight=False, markup=False, soft_wrap=True)

    def _live(self) -> Progress | None:
        """The rich display on a terminal (started on first use), None elsewhere."""
        if not self.console.is_terminal:
            return None
        if self._bars is None:
            self._bars = Progress(
                TextColumn("{task.description:<8}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[rate]}", style="progress.data.speed"),
                TextColumn("{task.fields[prompt]}", markup=False),
                TimeElapsedColumn(),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                console=self.console,
                redirect_stdout=False,  # stdout may carry the video (-o -) or --json
            )
            self._bars.start()
        return self._bars


class SilentStream(Silent):
    """Stream progress that shows nothing (--quiet)."""

    def chunk_written(self, chunks_done: int, throughput: Throughput) -> None:
        pass

    def following(self, text: ChunkText, chunk: int) -> None:
        pass

    def prompt_taken(self, chunk: int, chunks: int, prompt: str) -> None:
        pass

    def live_warning(self, message: str) -> None:
        warning(message)


def describe_text(text: ChunkText) -> str:
    """'a cat walks', or for a blend 'a cat walks' 67% + 'a robot dances' 33%."""
    if isinstance(text, str):
        return _short(text)
    return " + ".join(f"{_short(prompt)} {weight:.0%}" for prompt, weight in text)


def _short(prompt: str) -> str:
    return repr(prompt if len(prompt) <= PROMPT_SHOWN else prompt[: PROMPT_SHOWN - 3] + "...")
