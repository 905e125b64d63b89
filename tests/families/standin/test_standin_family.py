"""The registry is the only switch between families: a family defined in this folder, registered in the
test, runs through `vidgen t2v` and `vidgen batch` with no change to any file of vidgen."""

import json

import imageio.v3 as iio
import numpy as np
import pytest
from standin_family import FAMILY, PRESET, expected_frames

from vidgen.families import registry


@pytest.fixture
def standin(tmp_path, monkeypatch):
    presets = tmp_path / "presets"
    presets.mkdir()
    (presets / "tiny-standin.toml").write_text(PRESET)
    monkeypatch.setenv("VIDGEN_PRESETS", str(presets))
    monkeypatch.setenv("VIDGEN_CACHE", str(tmp_path / "cache"))
    monkeypatch.setitem(registry.FAMILIES, FAMILY.name, FAMILY)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def assert_frames(path, seed: int) -> None:
    frames = np.stack(list(iio.imiter(path)))
    expected = expected_frames(seed, 5, 32, 48)
    assert frames.shape == expected.shape
    # Flat shades survive the H.264 round trip within a few levels.
    assert np.abs(frames.astype(int) - expected.astype(int)).max() <= 3


def test_a_family_registered_in_a_test_runs_through_t2v(standin, vidgen):
    run = vidgen("t2v", "--model", "tiny-standin", "--prompt", "a cat", "--seed", "3", "-o", "cat.mp4", "-q")
    assert run.exit_code == 0, run.stderr
    assert_frames(standin / "cat.mp4", seed=3)
    sidecar = json.loads((standin / "cat.mp4.json").read_text())
    assert sidecar["model"]["preset"] == "tiny-standin"


def test_a_family_registered_in_a_test_runs_through_batch(standin, vidgen):
    jobs = standin / "jobs.jsonl"
    jobs.write_text('{"prompt": "a cat", "seed": 1, "name": "one"}\n{"prompt": "a dog", "seed": 2}\n')
    run = vidgen("batch", str(jobs), "-o", "out", "--model", "tiny-standin", "-q")
    assert run.exit_code == 0, run.stderr
    assert_frames(standin / "out" / "one.mp4", seed=1)
    assert_frames(standin / "out" / "00002.mp4", seed=2)


def test_an_unknown_family_is_a_one_line_error_not_another_familys_rules(standin, vidgen):
    registry.FAMILIES.pop(FAMILY.name)
    run = vidgen("t2v", "--model", "tiny-standin", "--prompt", "a cat", "-o", "cat.mp4")
    assert run.exit_code == 2
    assert "unknown model family 'standin'" in run.stderr
    assert "Traceback" not in run.stderr and not (standin / "cat.mp4").exists()
