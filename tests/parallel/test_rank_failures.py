"""How a torchrun world fails: one line from vidgen, not one per rank nor a traceback per rank.

A mistake in the options is found by every rank: rank 0 alone prints it, and every rank exits with the
same code (2), none stopped by torchrun's SIGTERM. A rank that dies (SIGKILL) leaves the others in a
collective: each survivor prints one line and exits non-zero, instead of gloo's traceback. torchrun
then prints its own report (and its ChildFailedError traceback, which it prints for any failed rank).
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from vidgen.families import registry

KILLING = Path(__file__).with_name("dying_launcher.py")
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone"]


@pytest.fixture(autouse=True)
def workdir(offline_workdir):
    return offline_workdir


def torchrun(ranks: int, *argv: str, env: dict | None = None) -> subprocess.CompletedProcess:
    command = [*TORCHRUN, "--nproc_per_node", str(ranks), *argv]
    return subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)


def exit_codes(stderr: str) -> dict[int, int]:
    """Each rank's exit code, from torchrun's failure report."""
    found = re.findall(r"rank\s+: (\d+) \(local_rank: \d+\)\n\s+exitcode\s+: (-?\d+)", stderr)
    return {int(rank): int(code) for rank, code in found}


def errors(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error: ")]


def test_a_mistake_every_rank_finds_is_printed_once_and_every_rank_exits_2():
    registry.ensure_tiny("cogvideox", "t2v")
    argv = ("-m", "tiny-cogvideox", "a cat", "--steps", "1", "--parallel", "ulysses", "-o", "x.mp4", "-q")
    run = torchrun(3, "-m", "vidgen", "t2v", *argv)
    assert errors(run.stderr) == [
        "error: --parallel ulysses cannot split the model's 2 attention heads over 3 ranks (use 2 ranks, or "
        "--parallel ring (any number of ranks))"
    ], run.stderr
    assert exit_codes(run.stderr) == {0: 2, 1: 2, 2: 2}, run.stderr
    assert "[rank" not in run.stderr and run.stderr.count("Traceback") == 1  # torchrun's own only
    assert not Path("x.mp4").exists()


def test_helios_rank_counts_that_do_not_split_its_sequences_name_those_that_do():
    registry.ensure_tiny("helios", "distilled")
    run = torchrun(3, "-m", "vidgen", "stream", "-m", "tiny-helios-distilled", "a cat", "-o", "x.mp4", "-q")
    assert errors(run.stderr) == [
        "error: 3-way ring cannot split Helios' sequences at 128x64 (history and each pyramid stage: 18, 72, "
        "80, 288 tokens) evenly over 3 ranks (use 2 ranks)"
    ], run.stderr
    assert exit_codes(run.stderr) == {0: 2, 1: 2, 2: 2}, run.stderr
    assert not Path("x.mp4").exists()


def test_a_killed_rank_leaves_the_survivor_one_line_and_a_failing_exit():
    registry.ensure_tiny("cogvideox", "t2v")
    argv = ("t2v", "-m", "tiny-cogvideox", "a cat", "--seed", "3", "--steps", "2", "-o", "x.mp4", "-q")
    run = torchrun(2, str(KILLING), *argv, env={**os.environ, "KILL_RANK": "1"})
    codes = exit_codes(run.stderr)
    assert codes[1] == -9, run.stderr  # the rank that was killed
    assert codes[0] != 0, run.stderr
    # One line from the survivor: that its peer is gone, or, if torchrun's SIGTERM came first, that it
    # was interrupted; never gloo's traceback.
    (line,) = errors(run.stderr)
    assert line.startswith(("error: rank 0 stopped: another rank is gone (", "error: interrupted")), line
    assert "[rank0]" not in run.stderr and run.stderr.count("Traceback") == 1, run.stderr
    assert not Path("x.mp4").exists()
