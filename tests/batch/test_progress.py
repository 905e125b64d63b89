"""The jobs bar's ETA, and the plain lines a batch prints off a terminal."""

import io

from rich.console import Console

from vidgen.app.batch.manifest import Record
from vidgen.app.batch.progress import BatchProgress, eta


def test_eta_is_the_mean_job_time_per_job_left_less_the_current_jobs_time():
    assert eta(0.0, 0, 5) is None
    assert eta(10.0, 2, 5) == 15.0  # 5 s a job, 3 left
    assert eta(12.0, 2, 5, last_done=10.0) == 13.0  # the third job has run 2 s of its 5
    assert eta(40.0, 2, 5, last_done=10.0) == 0.0  # a slow job: never negative


def test_off_a_terminal_each_job_is_one_line_and_failures_show_even_when_quiet():
    for quiet, expected in ((False, 2), (True, 1)):
        stream = io.StringIO()
        with BatchProgress(2, console=Console(file=stream, width=200), quiet=quiet) as progress:
            progress.start_jobs()
            progress.end_job(Record("cat", 1, "ok", seconds=1.5))
            progress.end_job(Record("dog", 2, "failed", error="boom"))
        lines = stream.getvalue().splitlines()
        assert len(lines) == expected and lines[-1] == "error: dog (line 2) failed: boom"
        assert quiet or lines[0].startswith("[1/2] cat ok in 1.5 s, ETA")
