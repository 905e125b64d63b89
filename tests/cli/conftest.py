"""The command line under test: run `vidgen` in-process, in an empty folder, never reaching the hub."""

import os
from dataclasses import dataclass

import pytest
from typer.testing import CliRunner

from vidgen.cli import app


@dataclass
class Run:
    exit_code: int
    stdout: str
    stderr: str
    exception: BaseException | None

    @property
    def stderr_lines(self) -> list[str]:
        return self.stderr.strip().splitlines()


@pytest.fixture(autouse=True)
def workdir(tmp_path, monkeypatch):
    """Each test runs in its own empty folder (default output names land there), offline."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    return tmp_path


@pytest.fixture
def vidgen():
    """`vidgen(*args, input=None)` -> Run with stdout and stderr apart."""

    def invoke(*args: str, input: str | None = None) -> Run:
        result = CliRunner().invoke(app, list(args), input=input)
        return Run(result.exit_code, result.stdout, result.stderr, result.exception)

    return invoke


@pytest.fixture
def files_in():
    """`files_in(folder)` -> every name under it, hidden partial files included."""

    def listing(folder) -> set[str]:
        return {
            os.path.relpath(os.path.join(root, name), folder)
            for root, dirs, files in os.walk(folder)
            for name in dirs + files
        }

    return listing
