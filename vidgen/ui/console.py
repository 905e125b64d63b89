"""What the user sees on stderr while vidgen works: stage progress, notes, warnings, errors.

On a terminal each stage is one rich progress line (steps with it/s and ETA); anywhere else (a log
file, CI, a pipe) plain lines, so logs stay readable. stdout is left to results (`--json`).
"""

import logging
import math
import time
import warnings

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text


def error(message: str) -> None:
    typer.echo(f"error: {message}", err=True)


def warning(message: str) -> None:
    typer.echo(f"warning: {message}", err=True)


def note(message: str) -> None:
    typer.echo(f"note: {message}", err=True)


def quiet_libraries(verbose: bool | None = None) -> None:
    """Turn off transformers' and diffusers' own bars, and route every library's warnings through this
    console, shown with -v only (`verbose`; None keeps what `route_library_warnings` chose before).

    Their bars (weights loading) break up the stage lines, and their warnings repeat ours in library
    terms (a long prompt makes the tokenizer warn of "indexing errors" that truncation prevents, next
    to our warning that says how many tokens were dropped) or are for their developers (torch's
    flex-attention advice, diffusers' deprecations, once per torchrun rank). The libraries that print
    through handlers of their own (transformers, diffusers, torch) are set to errors only, or
    warnings with -v.
    """
    verbose = route_library_warnings(verbose)
    # Before either loads a model: both import torchao (the `[fast]` extra) when it is installed.
    logging.getLogger("torchao").addFilter(_not_torchao_kernel_notice)
    logging.getLogger("torch.utils._pytree").addFilter(_not_torchao_enum_notice)
    import diffusers
    import transformers

    for library in (transformers, diffusers):
        library.utils.logging.disable_progress_bar()
        if verbose:
            library.utils.logging.set_verbosity_warning()
        else:
            library.utils.logging.set_verbosity_error()
    logging.getLogger("torch").setLevel(logging.WARNING if verbose else logging.ERROR)


def route_library_warnings(verbose: bool | None = None) -> bool:
    """Python warnings, and log records of loggers without a handler of their own (torchao's), become
    our `warning:` lines, shown only when `verbose` (None: as an earlier call chose, else not); errors
    always show. Imports nothing; returns whether verbose."""
    route = next((h for h in logging.getLogger().handlers if isinstance(h, _LibraryLines)), None)
    if route is None:
        route = _LibraryLines()
        logging.getLogger().addHandler(route)
    if verbose is not None:
        route.verbose = verbose
    route.setLevel(logging.WARNING if route.verbose else logging.ERROR)
    warnings.showwarning = route.show_warning
    return route.verbose


class _LibraryLines(logging.Handler):
    """Libraries' warnings and log records as our own lines on stderr; warnings only when verbose."""

    verbose = False

    def emit(self, record: logging.LogRecord) -> None:
        first = record.getMessage().strip().splitlines() or [""]
        echo = error if record.levelno >= logging.ERROR else warning
        echo(f"{record.name}: {first[0]}")

    def show_warning(self, message, category, filename, lineno, file=None, line=None) -> None:
        """`warnings.showwarning`: the warning's first line and where it came from, with -v only."""
        if self.verbose:
            first = str(message).strip().splitlines() or [""]
            warning(f"{category.__name__}: {first[0]} ({filename}:{lineno})")


def _not_torchao_kernel_notice(record: logging.LogRecord) -> bool:
    """False for torchao's notice, on import, that one of its own kernel libraries did not load.

    Its wheels carry CUDA kernels (CUTLASS, MX formats) built against one torch release and CUDA: with
    any other torch, the CPU build above all, each fails to load (or is skipped) and torchao logs it in
    every process that imports transformers or diffusers. vidgen's int8 and fp8 never call those
    kernels; torchao's other logs pass.
    """
    message = record.getMessage()
    return not message.startswith(("Failed to load ", "Skipping import of cpp extensions"))


def _not_torchao_enum_notice(record: logging.LogRecord) -> bool:
    """False for torch's notice that an Enum of torchao's need not be registered as a pytree constant.

    torchao 0.18 registers its Enums as constants on import; torch 2.13 supports Enums natively and logs
    a deprecation notice for each, which only torchao can act on. Notices about anything else pass.
    """
    args = record.args if isinstance(record.args, tuple) else ()
    of_torchao = any(getattr(arg, "__module__", "").startswith("torchao") for arg in args)
    return not (of_torchao and "is an Enum subclass" in str(record.msg))


class _Rate(ProgressColumn):
    """Steps per second, for stages that have steps."""

    def render(self, task: Task) -> Text:
        if not task.total or task.total <= 1 or not task.speed:
            return Text("")
        return Text(f"{task.speed:.2f} it/s", style="progress.data.speed")


class ConsoleProgress:
    """`vidgen.core.progress.Progress` on stderr. Use as a context manager so a live display always stops."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console(stderr=True)
        self._bars: Progress | None = None
        self._task = None
        self._name = ""
        self._total: int | None = None
        self._done = 0
        self._started = 0.0
        self._last_step = 0.0  # when the stage's last step was done: its rate counts the steps alone
        self._compiling = 0.0  # the "compile" stage's seconds: the first step of the stage after it

    def __enter__(self) -> "ConsoleProgress":
        return self

    def __exit__(self, *exc_info) -> None:
        if self._bars is not None:
            self._bars.stop()

    def note(self, line: str) -> None:
        self.console.print(f"note: {line}", highlight=False, markup=False, soft_wrap=True)

    def start_stage(self, name: str, total: int | None = None) -> None:
        self._name, self._total, self._done, self._started = name, total, 0, time.perf_counter()
        self._last_step = self._started
        if self.console.is_terminal:
            self._task = self._live().add_task(name, total=total)
        elif total:
            self.console.print(f"{name}: {total} steps", highlight=False)

    def advance(self, steps: int = 1) -> None:
        before, self._done = self._done, self._done + steps
        self._last_step = time.perf_counter()
        if self._task is not None:
            self._live().advance(self._task, steps)
        elif self._total and _tenths(before, self._total) != _tenths(self._done, self._total):
            self.console.print(f"{self._name}: {self._step_line()}", highlight=False)

    def end_stage(self) -> None:
        seconds = time.perf_counter() - self._started
        if self._task is not None:
            total = self._total or 1  # a stage without steps shows as one finished step
            self._live().update(self._task, total=total, completed=total)
            self._task = None
        else:
            self.console.print(f"{self._name}: {self._done_line(seconds)}", highlight=False)
        # `--compile` shows a stage's first step, where the compiler runs, as a "compile" stage of its
        # own (vidgen.runtime.levers.compile_stage); the stage it belongs to counts it in its time.
        self._compiling = seconds if self._name == "compile" else 0.0

    def _done_line(self, seconds: float) -> str:
        """How long the stage took in all (as the sidecar's timings count it), and its steps' rate over
        the time they took (not a decode after them)."""
        stepping = self._last_step - self._started
        rate = f"{self._done / stepping:.2f} it/s" if self._total and self._done and stepping > 0 else ""
        if not self._compiling:
            return f"done in {seconds:.1f} s" + (f", {rate}" if rate else "")
        line = f"done in {self._compiling + seconds:.1f} s with the compile step"
        return line + (f"; {self._done} steps after it at {rate}" if rate else "")

    def _live(self) -> Progress:
        """The rich display, started on first use so that nothing before it (downloads) is covered."""
        if self._bars is None:
            self._bars = Progress(
                TextColumn("{task.description:<8}"),
                BarColumn(),
                MofNCompleteColumn(),
                _Rate(),
                TimeElapsedColumn(),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                console=self.console,
                redirect_stdout=False,  # stdout belongs to results (--json)
            )
            self._bars.start()
        return self._bars

    def _step_line(self) -> str:
        seconds = time.perf_counter() - self._started
        rate = self._done / seconds if seconds > 0 else math.inf
        eta = (self._total - self._done) / rate if rate else 0.0
        return f"{self._done}/{self._total} steps, {rate:.2f} it/s, ETA {eta:.0f} s"


def _tenths(done: int, total: int) -> int:
    return done * 10 // total
