"""`--cache mag` runs replay: a sidecar's command gives the frames the run made. The first run measures
(skipping nothing), so its command says `--mag-ratios=measure`; a later run skips with stored ratios,
so it writes those beside its output and its command names that file: the replay skips exactly where
the run did, whatever the shared store holds by then."""

import json
import shlex
import shutil

import imageio.v3 as iio
import numpy as np
import pytest

from vidgen.runtime.mag_cache import STORE_FOLDER

T2V = ("t2v", "--model", "tiny-cogvideox", "a cat", "--seed", "1", "--steps", "8", "--device", "cpu")
STREAM = ("stream", "--model", "tiny-helios", "a cat", "--seed", "1", "--steps", "4", "--frames", "66")


@pytest.fixture
def store(tmp_path, monkeypatch):
    """A cache folder of this test's own: the shared ratios store starts empty."""
    monkeypatch.setenv("VIDGEN_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache" / STORE_FOLDER


def made(invoke_cli, *args: str) -> tuple[np.ndarray, dict]:
    output = args[args.index("-o") + 1]
    run = invoke_cli(*args, "--quiet")
    assert run.exit_code == 0, run.stderr
    return iio.imread(output), json.loads(open(output + ".json").read())


def replayed(invoke_cli, sidecar: dict, output: str) -> np.ndarray:
    words = shlex.split(sidecar["command"])
    words[words.index("-o") + 1] = output
    return made(invoke_cli, *words[1:])[0]


@pytest.mark.parametrize("command", [T2V, STREAM], ids=["t2v", "stream"])
def test_the_first_run_and_a_run_with_stored_ratios_each_replay_their_own_frames(invoke_cli, store, command):
    first, first_sidecar = made(invoke_cli, *command, "--cache", "mag", "-o", "first.mp4")
    assert first_sidecar["runtime"]["cache"]["ratios"] == "measured"
    second, second_sidecar = made(invoke_cli, *command, "--cache", "mag", "-o", "second.mp4")
    cache = second_sidecar["runtime"]["cache"]
    assert cache["ratios"] == "stored" and cache["skipped"] > 0 and not np.array_equal(first, second)

    # The replay of the first run measures again, although the store now holds the ratios.
    assert np.array_equal(replayed(invoke_cli, first_sidecar, "first-again.mp4"), first)
    shutil.rmtree(store)  # later: the shared store is gone (or holds other ratios)
    assert np.array_equal(replayed(invoke_cli, second_sidecar, "second-again.mp4"), second)
    assert not store.exists()  # a replay neither reads nor writes the shared store
    assert "--cache=mag --mag-ratios=measure" in first_sidecar["command"]
    assert "--mag-ratios=second.mp4.mag-ratios.json" in second_sidecar["command"]


def test_mag_ratios_needs_the_mag_cache_and_a_readable_file(invoke_cli, store, tmp_path):
    run = invoke_cli(*T2V, "--mag-ratios", "measure", "-o", "out.mp4")
    assert run.exit_code == 2 and run.stderr.startswith("error: --mag-ratios is for --cache mag")
    (tmp_path / "bad.json").write_text("[" * 50_000)
    run = invoke_cli(*T2V, "--cache", "mag", "--mag-ratios", str(tmp_path / "bad.json"), "-o", "out.mp4")
    assert run.exit_code == 2 and "is unreadable" in run.stderr and len(run.stderr.splitlines()) == 1
