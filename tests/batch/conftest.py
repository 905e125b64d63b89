"""`vidgen batch` under test: in-process runs in an empty folder, offline, on the tiny model at 32x32."""

import json
from pathlib import Path

import pytest

import vidgen.families.cogvideox.pipeline as cogvideox

# One frame, one step, 32x32: every job takes a fraction of a second on the tiny model.
SMALL = ("--model", "tiny-cogvideox", "--steps", "1", "--height", "32", "--width", "32", "--frames", "1")


@pytest.fixture(autouse=True)
def workdir(offline_workdir, monkeypatch):
    """Each test runs in its own empty folder, offline."""
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):  # a test run under torchrun is not a batch rank
        monkeypatch.delenv(name, raising=False)
    return offline_workdir


@pytest.fixture
def batch(invoke_cli):
    """`batch(*args, input=None)` runs `vidgen batch *args SMALL` -> Run with stdout and stderr apart."""
    return lambda *args, input=None: invoke_cli("batch", *args, *SMALL, input=input)


@pytest.fixture
def generated(monkeypatch) -> list[str]:
    """The prompts the pipeline generated, in order: the real tiny pipeline, counted.

    A job whose prompt contains "explode" raises a RuntimeError, one with "ctrl-c" a KeyboardInterrupt.
    """
    calls: list[str] = []
    real = cogvideox.generate

    def counted(model, request, runtime, progress, text_cache=None):
        calls.append(request.prompt)
        if "explode" in request.prompt:
            raise RuntimeError("the pipeline exploded")
        if "ctrl-c" in request.prompt:
            raise KeyboardInterrupt
        return real(model, request, runtime, progress, text_cache=text_cache)

    monkeypatch.setattr(cogvideox, "generate", counted)
    return calls


@pytest.fixture
def write_jobs():
    """`write_jobs(path, *jobs)` writes a JSONL file: dicts as JSON objects, strings as raw lines."""

    def write(path: Path, *jobs: dict | str) -> Path:
        path.write_text("".join((job if isinstance(job, str) else json.dumps(job)) + "\n" for job in jobs))
        return path

    return write


@pytest.fixture
def manifest():
    """`manifest(outdir)` -> every record of every manifest part in `outdir`."""

    def records(outdir: Path) -> list[dict]:
        return [json.loads(line) for path in sorted(outdir.glob("manifest*.jsonl")) for line in path.open()]

    return records


@pytest.fixture
def small() -> tuple[str, ...]:
    return SMALL
