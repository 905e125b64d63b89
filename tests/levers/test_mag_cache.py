"""`--cache mag`: the first loop with a model and schedule measures the magnitude ratios (skipping
nothing: the frames equal uncached ones) and stores them; later loops read them and skip. Threshold
zero never skips; a damaged store is measured again; a preset's ratios are used as given."""

import json

import numpy as np
import pytest

from vidgen.core.errors import VidgenError
from vidgen.core.request import Request, Runtime
from vidgen.families.cogvideox import pipeline as cogvideox
from vidgen.families.helios import pipeline as helios
from vidgen.runtime.levers import take_skip_count
from vidgen.runtime.mag_cache import STORE_FOLDER
from vidgen.runtime.ranks import Rank
from vidgen.validate.common import Options
from vidgen.validate.runtime import build_runtime, parallel_runtime
from vidgen.weights.presets import PRESET_DIR, load_preset

COGVIDEOX = Request(mode="t2v", prompt="a cat", seed=3, steps=6, guidance=6.0, height=64, width=96, frames=9)
HELIOS = Request(mode="t2v", prompt="a cat", seed=3, steps=3, guidance=5.0, height=32, width=48, frames=66)
LOOSE = 10.0  # a threshold every step after the first passes: skipping is certain on the tiny models


@pytest.fixture(scope="module")
def folders(tiny_folder):
    names = {
        "cogvideox": ("cogvideox", "t2v"),
        "helios": ("helios", "base"),
        "distilled": ("helios", "distilled"),
    }
    return {name: tiny_folder(*model) for name, model in names.items()}


@pytest.fixture(scope="module")
def uncached(folders):
    model = cogvideox.load(folders["cogvideox"], Runtime())
    return cogvideox.generate(model, COGVIDEOX, Runtime()).frames


@pytest.fixture
def store(tmp_path, monkeypatch):
    """vidgen's cache folder for this test: the ratios land in STORE."""
    monkeypatch.setenv("VIDGEN_CACHE", str(tmp_path))
    return tmp_path / STORE_FOLDER


def cogvideox_run(folder, runtime: Runtime) -> tuple[np.ndarray, dict, list[str]]:
    model = cogvideox.load(folder, runtime)
    frames = cogvideox.generate(model, COGVIDEOX, runtime).frames
    return frames, take_skip_count(model.transformer), model.transformer.mag_cache.notes


def stored(store) -> dict[str, list[float]]:
    (path,) = store.glob("*.json")
    return json.loads(path.read_text())["schedules"]


def test_first_run_measures_ratios_with_the_uncached_frames_and_the_next_run_skips(folders, uncached, store):
    frames, counts, notes = cogvideox_run(folders["cogvideox"], Runtime(cache="mag", cache_threshold=LOOSE))
    assert np.array_equal(frames, uncached)
    assert counts["calls"] == 6 and counts["skipped"] == 0 and counts["ratios"] == "measured"
    assert len(notes) == 1 and "measuring them" in notes[0] and str(store) in notes[0]
    (ratios,) = stored(store).values()
    assert len(ratios) == 6 and ratios[0] == 1.0 and len(set(ratios)) > 1  # one per step, measured

    frames, counts, notes = cogvideox_run(folders["cogvideox"], Runtime(cache="mag", cache_threshold=LOOSE))
    assert counts["calls"] == 6 and counts["skipped"] > 0 and counts["ratios"] == "stored" and notes == []
    assert not np.array_equal(frames, uncached)

    frames, counts, _ = cogvideox_run(folders["cogvideox"], Runtime(cache="mag", cache_threshold=0.0))
    assert np.array_equal(frames, uncached) and counts["skipped"] == 0


def test_another_step_count_is_another_schedule_measured_anew(folders, store):
    model = cogvideox.load(folders["cogvideox"], Runtime(cache="mag", cache_threshold=LOOSE))
    for steps in (6, 4):
        cogvideox.generate(model, Request(**{**COGVIDEOX.__dict__, "steps": steps}), Runtime())
        assert take_skip_count(model.transformer)["ratios"] == "measured"
    assert sorted(len(ratios) for ratios in stored(store).values()) == [4, 6]
    assert len(model.transformer.mag_cache.notes) == 1  # said once per model


def test_damaged_stored_ratios_are_measured_again_with_a_note(folders, uncached, store):
    cogvideox_run(folders["cogvideox"], Runtime(cache="mag"))
    (path,) = store.glob("*.json")
    whole = json.loads(path.read_text())
    (key,) = whole["schedules"]
    damages = {
        "unreadable (JSONDecodeError)": path.read_text()[:40],  # cut short, as a full disk leaves it
        "its ratios for one schedule are not 6 positive numbers": json.dumps(
            {**whole, "schedules": {key: [1.0, -1.0]}}
        ),
    }
    runtime = Runtime(cache="mag", cache_threshold=LOOSE)
    for problem, text in damages.items():
        path.write_text(text)
        frames, counts, notes = cogvideox_run(folders["cogvideox"], runtime)
        assert notes[0] == f"--cache mag: the stored ratios in {path} are {problem}; measuring them again"
        assert np.array_equal(frames, uncached) and counts["skipped"] == 0
        assert stored(store) == whole["schedules"]  # written whole again


def test_unstorable_ratios_still_give_the_video_with_a_note(folders, uncached, monkeypatch, tmp_path):
    (tmp_path / "a-file").write_text("")
    monkeypatch.setenv("VIDGEN_CACHE", str(tmp_path / "a-file" / "cache"))
    frames, counts, notes = cogvideox_run(folders["cogvideox"], Runtime(cache="mag"))
    assert np.array_equal(frames, uncached) and counts["ratios"] == "measured"
    assert notes[-1].startswith("--cache mag: could not store the ratios it measured in ")


def test_ratios_from_the_preset_skip_on_the_first_run_and_store_nothing(folders, uncached, store):
    ratios = (1.0, 1.02, 0.98)
    _, counts, notes = cogvideox_run(
        folders["cogvideox"], Runtime(cache="mag", cache_threshold=LOOSE, mag_ratios=ratios)
    )
    assert counts["skipped"] > 0 and counts["ratios"] == "preset" and notes == []
    assert not store.exists()
    # Stretched to 6 steps, step 1 gets ratio 1.0: an error of exactly 0, still not skipped at threshold 0.
    frames, counts, _ = cogvideox_run(
        folders["cogvideox"], Runtime(cache="mag", cache_threshold=0.0, mag_ratios=ratios)
    )
    assert np.array_equal(frames, uncached) and counts["skipped"] == 0


def test_helios_measures_on_the_first_chunk_and_later_chunks_skip(folders, store):
    def chunks(runtime: Runtime) -> tuple[list[np.ndarray], dict | None]:
        model = helios.load(folders["helios"], runtime)
        settings = helios.HeliosSettings(history_sizes=(2, 1, 1))
        frames = list(helios.generate_chunks(model, HELIOS, settings, runtime))
        return frames, take_skip_count(model.transformer)

    plain, _ = chunks(Runtime())
    first, counts = chunks(Runtime(cache="mag", cache_threshold=LOOSE))
    # Chunk 1 measures (both guidance branches compute its 3 steps); chunk 2 has the same schedule.
    assert np.array_equal(first[0], plain[0]) and not np.array_equal(first[1], plain[1])
    assert (counts["calls"], counts["skipped"], counts["ratios"]) == (12, 4, "measured")
    exact, counts = chunks(Runtime(cache="mag", cache_threshold=0.0))
    assert all(np.array_equal(a, b) for a, b in zip(exact, plain, strict=True)) and counts["skipped"] == 0


def test_each_pyramid_stage_has_its_own_ratios(folders, store):
    request = Request(mode="t2v", prompt="a cat", seed=3, guidance=1.0, height=64, width=128, frames=33)
    settings = helios.HeliosSettings(pyramid_steps=(2, 2, 2), amplify_first_chunk=False)

    def counts() -> dict | None:
        runtime = Runtime(cache="mag", cache_threshold=LOOSE)
        model = helios.load(folders["distilled"], runtime)
        for _ in helios.generate_chunks(model, request, settings, runtime):
            pass
        return take_skip_count(model.transformer)

    measured = counts()
    assert (measured["calls"], measured["skipped"], measured["ratios"]) == (6, 0, "measured")
    assert len(stored(store)) == 3  # one schedule per stage
    skipping = counts()
    assert (skipping["skipped"], skipping["ratios"]) == (3, "stored")  # each stage computes its first step


def test_the_sidecar_records_measuring_then_skipping(invoke_cli, offline_workdir):
    def run(name: str) -> dict:
        result = invoke_cli(
            "t2v", "--model", "tiny-cogvideox", "a cat", "--seed", "1", "--steps", "8", "--cache", "mag",
            "--device", "cpu", "-o", name, "--json",
        )  # fmt: skip
        assert result.exit_code == 0, result.stderr
        cache = json.loads(result.stdout)["runtime"]["cache"]
        assert json.loads((offline_workdir / f"{name}.json").read_text())["runtime"]["cache"] == cache
        return cache, result.stderr

    cache, stderr = run("first.mp4")
    assert (cache["mode"], cache["calls"], cache["skipped"], cache["ratios"]) == ("mag", 8, 0, "measured")
    assert "note: --cache mag: no magnitude ratios stored" in stderr
    cache, stderr = run("second.mp4")
    assert (cache["calls"], cache["ratios"]) == (8, "stored") and cache["skipped"] > 0
    assert "--cache mag" not in stderr


def test_a_preset_may_set_the_cache_and_its_ratios(tmp_path):
    source = (PRESET_DIR / "tiny-cogvideox.toml").read_text()
    path = tmp_path / "mag.toml"
    path.write_text(source + '\ncache = "mag"\nmag_ratios = [1.0, 1.02, 0.98]\n')
    preset = load_preset(path)
    assert preset.cache == "mag" and preset.mag_ratios == (1.0, 1.02, 0.98)
    runtime = build_runtime(Options(mode="t2v", model="mag"), preset, "cpu", [])
    assert (runtime.cache, runtime.mag_ratios) == ("mag", (1.0, 1.02, 0.98))
    assert build_runtime(Options(mode="t2v", model="mag", cache="none"), preset, "cpu", []).cache == "none"
    path.write_text(source + "\nmag_ratios = [1.0, -2]\n")
    with pytest.raises(ValueError, match="mag_ratios must be a list of positive numbers"):
        load_preset(path)


def test_mag_cache_is_refused_under_torchrun_parallel():
    options = Options(mode="t2v", model="tiny-cogvideox", parallel="cfg")
    with pytest.raises(VidgenError, match="--cache cannot run under torchrun with --parallel"):
        parallel_runtime(options, Runtime(cache="mag"), 2, True, Rank(0, 2))
