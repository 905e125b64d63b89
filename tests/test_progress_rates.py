"""Progress lines tell the truth: a stage's time is all of it (with --compile, the compile step too, as
the sidecar's timings count it), and a rate counts the steps over the time those steps took."""

import io
from types import SimpleNamespace

import pytest
from rich.console import Console

from vidgen.runtime.levers import compile_stage
from vidgen.ui import console as console_module
from vidgen.ui.console import ConsoleProgress


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch):
    clock = Clock()
    monkeypatch.setattr(console_module.time, "perf_counter", clock)
    return clock


def plain_progress() -> tuple[ConsoleProgress, io.StringIO]:
    out = io.StringIO()
    return ConsoleProgress(Console(file=out, force_terminal=False, width=200)), out


def done_lines(out: io.StringIO) -> list[str]:
    return [line for line in out.getvalue().splitlines() if "done in" in line]


def test_with_compile_the_denoise_line_counts_the_compile_step_and_rates_the_steps_after_it(clock):
    console, out = plain_progress()
    progress = compile_stage(console, SimpleNamespace(compile_pending=True))
    progress.start_stage("denoise", 8)
    clock.now += 19.0  # the first step: the compiler runs
    progress.advance()
    for _ in range(7):
        clock.now += 0.005
        progress.advance()
    progress.end_stage()
    assert done_lines(out) == [
        "compile: done in 19.0 s",
        "denoise: done in 19.0 s with the compile step; 7 steps after it at 200.00 it/s",
    ]


def test_a_helios_chunks_rate_leaves_out_the_decode_after_its_steps(clock):
    progress, out = plain_progress()
    progress.start_stage("chunk 1/2", 4)
    for _ in range(4):
        clock.now += 1.0
        progress.advance()
    clock.now += 6.0  # the chunk's decode, before the stage ends
    progress.end_stage()
    assert done_lines(out) == ["chunk 1/2: done in 10.0 s, 1.00 it/s"]
