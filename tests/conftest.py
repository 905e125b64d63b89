"""Shared by every test: tiny models build into one throwaway cache per session, never the user's;
and the in-process command-line harness the CLI and batch tests use."""

import re
from dataclasses import dataclass

import pytest
import torch
from typer.testing import CliRunner

from vidgen.cli import app
from vidgen.families import registry


def pytest_configure(config):
    for name in registry.FAMILIES:
        config.addinivalue_line("markers", f"{name}: a test of the {name} family (`pytest -m {name}`)")


def pytest_collection_modifyitems(items):
    """Each test that names a family (in its file, its name or its parameters) carries that family's
    marker, so `pytest -m helios` runs one family's tests alone."""
    names = {name: re.compile(rf"(?<![a-z]){name}(?![a-z])") for name in registry.FAMILIES}  # not "want"
    for item in items:
        words = item.nodeid.lower()
        for name, pattern in names.items():
            if pattern.search(words):
                item.add_marker(getattr(pytest.mark, name))


@pytest.fixture(scope="session", autouse=True)
def _tiny_model_cache(tmp_path_factory):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("VIDGEN_CACHE", str(tmp_path_factory.mktemp("vidgen-cache")))
        yield


@pytest.fixture(scope="session")
def tiny_folder(tmp_path_factory):
    """`tiny_folder(family, variant)`: a tiny model's folder, built once per session in a cache of its
    own, so tests that point VIDGEN_CACHE elsewhere still find it."""
    root = tmp_path_factory.mktemp("tiny-models")
    return lambda family, variant: registry.ensure_tiny(family, variant, root)


@pytest.fixture(scope="session", autouse=True)
def _one_thread():
    # Every model in the suite is tiny: intra-op threads cost more than they save (measured up to 5x the
    # CPU on a busy 2-core machine). Both sides of a parity test run under the same setting.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@dataclass
class Run:
    exit_code: int
    stdout: str
    stderr: str
    exception: BaseException | None

    @property
    def stderr_lines(self) -> list[str]:
        return self.stderr.strip().splitlines()


@pytest.fixture
def invoke_cli():
    """`invoke_cli(*argv, input=None)` runs `vidgen *argv` in-process -> Run with stdout and stderr apart."""

    def invoke(*argv: str, input: str | None = None) -> Run:
        result = CliRunner().invoke(app, list(argv), input=input)
        return Run(result.exit_code, result.stdout, result.stderr, result.exception)

    return invoke


@pytest.fixture
def vidgen(invoke_cli):
    """`vidgen(*args, input=None)` -> Run with stdout and stderr apart: `invoke_cli` by the command's name."""
    return invoke_cli


@pytest.fixture
def offline_workdir(tmp_path, monkeypatch):
    """An empty current folder (default output names land there), with the hub unreachable."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    return tmp_path


@pytest.fixture
def stand_in_pipeline(monkeypatch):
    """A stand-in for CogVideoX's pipeline, in its registry row, that records loading and makes black
    frames; replace `.generate` to make generation fail."""
    import types
    from dataclasses import replace

    import numpy as np

    from vidgen.core.request import Result
    from vidgen.families import registry

    fake = types.SimpleNamespace(calls=[])
    # run.load counts the loaded transformer's bytes for the sidecar: a one-weight stand-in.
    fake.load = lambda folder, runtime: (
        fake.calls.append("load") or types.SimpleNamespace(transformer=torch.nn.Linear(1, 1))
    )
    fake.generate = lambda model, request, runtime, progress, text_cache=None: Result(
        frames=np.zeros((request.frames, request.height, request.width, 3), np.uint8)
    )
    cogvideox = registry.FAMILIES["cogvideox"]
    monkeypatch.setitem(registry.FAMILIES, "cogvideox", replace(cogvideox, pipeline=lambda: fake))
    return fake


@pytest.fixture
def never_failing_block_noise(monkeypatch):
    """diffusers' pyramid block noise fails on the CPU for the released gamma (see
    tests/stages/test_block_noise.py); vidgen's draws the same numbers wherever diffusers' succeeds, so
    diffusers' pyramid pipeline draws with it in the parity tests."""
    import diffusers

    from vidgen.families.helios import pyramid

    monkeypatch.setattr(
        diffusers.HeliosPyramidPipeline, "sample_block_noise", pyramid.diffusers_sample_block_noise
    )
