"""-q means quiet: the libraries' own warnings (torch, diffusers, transformers, torchao) go through
vidgen's console and show only with -v. Each check runs in a process of its own: pytest's own warning
capture would hide what a real run prints."""

import os
import subprocess
import sys

from vidgen.families import registry

T2V = ("t2v", "a cat", "--model", "tiny-cogvideox", "--steps", "1", "--seed", "1", "--attention", "flex")

# Warnings from the places they come from in a real run: a library module's warnings.warn (as
# diffusers' deprecations and torch's flex-attention advice), a handler-less library logger (as
# torchao's notices on import), transformers' own logger.
LIBRARY_WARNINGS = """
import logging, sys, warnings
from vidgen.ui import console
console.quiet_libraries(verbose=sys.argv[1] == "verbose")
from transformers.utils import logging as transformers_logging
exec(compile("warnings.warn('all_gather_tensor is deprecated', FutureWarning)", "diffusers/x.py", "exec"))
logging.getLogger("torchao.kernel").warning("Failed to load _C.so")
transformers_logging.get_logger("transformers.tokenization").warning("a tokenizer notice")
"""


def run_in_process(*argv: str, cwd) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PYTHONWARNINGS": ""}
    return subprocess.run(
        [sys.executable, *argv], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


def test_a_quiet_run_prints_no_library_warning_even_when_torch_warns(tmp_path):
    registry.ensure_tiny("cogvideox", "t2v")
    run = run_in_process("-m", "vidgen", *T2V, "-q", "-o", "a.mp4", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert run.stderr == ""
    assert run.stdout.startswith("wrote a.mp4")


def test_verbose_shows_the_library_warning_as_one_line(tmp_path):
    registry.ensure_tiny("cogvideox", "t2v")
    run = run_in_process("-m", "vidgen", *T2V, "-q", "-v", "-o", "a.mp4", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    lines = run.stderr.strip().splitlines()
    assert (
        [line for line in lines if "flex_attention" in line]
        == [line for line in lines if line.startswith("warning: UserWarning: flex_attention called without")]
        != []
    )


def test_library_warnings_and_logs_are_silent_unless_verbose(tmp_path):
    quiet = run_in_process("-c", LIBRARY_WARNINGS, "quiet", cwd=tmp_path)
    assert quiet.returncode == 0, quiet.stderr
    assert quiet.stderr == ""
    verbose = run_in_process("-c", LIBRARY_WARNINGS, "verbose", cwd=tmp_path)
    assert verbose.returncode == 0, verbose.stderr
    assert "warning: FutureWarning: all_gather_tensor is deprecated (diffusers/x.py:1)" in verbose.stderr
    assert "warning: torchao.kernel: Failed to load _C.so" in verbose.stderr
    assert "a tokenizer notice" in verbose.stderr
