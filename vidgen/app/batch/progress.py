"""What a batch shows on stderr: a jobs bar with an ETA, and the current job's stage under it.

On a terminal these are two rich lines that update in place, with failures printed above them; anywhere
else (a log file, CI) one plain line per finished job. The ETA is the mean time of this run's finished
jobs times the jobs left, steadier than a rate over the last seconds when a job takes minutes.
"""

import time

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, Task, TextColumn
from rich.text import Text

from vidgen.app.batch.manifest import Record


def eta(elapsed: float, done: int, total: int, last_done: float | None = None) -> float | None:
    """Seconds left: the mean time of the `done` jobs for each job left, less the time the current job
    has run since the last one ended (at `last_done`, default now); None before the first one ends."""
    if not done:
        return None
    last_done = elapsed if last_done is None else last_done
    return max(last_done / done * (total - done) - (elapsed - last_done), 0.0)


def clock(seconds: float | None) -> str:
    if seconds is None:
        return "-:--"
    minutes, seconds = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes}:{seconds:02d}"


class _Times(ProgressColumn):
    """Elapsed time and the ETA of the jobs bar; nothing for the stage line."""

    def render(self, task: Task) -> Text:
        if not task.fields.get("jobs"):
            return Text("")
        elapsed = task.elapsed or 0.0
        left = eta(elapsed, int(task.completed), int(task.total or 0), task.fields.get("last_done", 0.0))
        return Text(f"{clock(elapsed)} ETA {clock(left)}", style="progress.remaining")


class BatchProgress:
    """The vidgen.core.progress.Progress protocol for the current job's stages, plus the jobs bar.

    Use as a context manager so that the live display always stops.
    """

    def __init__(
        self, total: int, console: Console | None = None, quiet: bool = False, label: str = ""
    ) -> None:
        self.console = console or Console(stderr=True)
        self.total, self.quiet, self.label = total, quiet, label
        self.done = 0
        self._job = ""
        self._started = time.perf_counter()
        self._bars: Progress | None = None
        self._jobs_task = self._stage_task = None

    def __enter__(self) -> "BatchProgress":
        if self.console.is_terminal and not self.quiet and self.total:
            self._bars = Progress(
                TextColumn("{task.description:<24}"),
                BarColumn(),
                MofNCompleteColumn(),
                _Times(),
                console=self.console,
                redirect_stdout=False,  # stdout belongs to results (--json)
            )
            self._bars.start()
            # Not started until the model is loaded: its clock (the ETA's) leaves loading out.
            self._jobs_task = self._bars.add_task(
                f"{self.label}jobs", total=self.total, start=False, jobs=True
            )
            self._stage_task = self._bars.add_task("", total=None)
        return self

    def __exit__(self, *exc_info) -> None:
        if self._bars is not None:
            self._bars.stop()

    def start_jobs(self) -> None:
        """The model is loaded: the jobs clock starts now, so the ETA leaves loading out."""
        self._started = time.perf_counter()
        if self._bars is not None:
            self._bars.start_task(self._jobs_task)

    def start_job(self, name: str) -> None:
        self._job = name

    def end_job(self, record: Record) -> None:
        self.done += 1
        if self._jobs_task is not None:
            elapsed = self._bars.tasks[self._jobs_task].elapsed or 0.0
            self._bars.update(self._jobs_task, advance=1, last_done=elapsed)
        if record.status == "failed":
            self.print(f"error: {record.name} (line {record.line}) failed: {record.error}")
        elif self._bars is None and not self.quiet:
            left = eta(time.perf_counter() - self._started, self.done, self.total)
            self.print(f"{self._count()} {record.name} ok in {record.seconds:.1f} s, ETA {clock(left)}")

    def print(self, line: str) -> None:
        """A line above the bars (or alone, off a terminal)."""
        self.console.print(line, highlight=False, markup=False, soft_wrap=True)

    def note(self, line: str) -> None:
        if not self.quiet:  # --quiet: no progress or notes
            self.print(f"note: {line}")

    def _count(self) -> str:
        return f"[{self.label}{self.done}/{self.total}]"

    # vidgen.core.progress.Progress, for the current job's stages
    def start_stage(self, name: str, total: int | None = None) -> None:
        if self._bars is not None:
            description = f"{self._job} {name}" if self._job else name
            # A stage without steps shows as one step (rich keeps the last total when given None).
            self._bars.reset(self._stage_task, total=total or 1, description=description[:24])

    def advance(self, steps: int = 1) -> None:
        if self._bars is not None:
            self._bars.advance(self._stage_task, steps)

    def end_stage(self) -> None:
        if self._bars is not None:
            task = self._bars.tasks[self._stage_task]
            self._bars.update(self._stage_task, completed=task.total)
