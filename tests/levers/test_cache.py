"""`--cache`: diffusers' step caches on vidgen's transformers. Threshold zero skips nothing and
changes no frame; a loose threshold skips calls, counted; Helios starts its cache over every chunk."""

import json

import numpy as np
import pytest

from vidgen.core.request import Request, Runtime
from vidgen.families.cogvideox import pipeline as cogvideox
from vidgen.families.helios import pipeline as helios
from vidgen.families.helios import tiny as helios_tiny
from vidgen.runtime.levers import take_skip_count

COGVIDEOX = Request(mode="t2v", prompt="a cat", seed=3, steps=6, guidance=6.0, height=64, width=96, frames=9)
HELIOS = Request(mode="t2v", prompt="a cat", seed=3, steps=3, guidance=5.0, height=32, width=48, frames=66)


@pytest.fixture(scope="module")
def folders(tiny_folder):
    return {"cogvideox": tiny_folder("cogvideox", "t2v"), "helios": tiny_folder("helios", "base")}


def cogvideox_frames(
    folder, runtime: Runtime, request: Request = COGVIDEOX
) -> tuple[np.ndarray, dict | None]:
    model = cogvideox.load(folder, runtime)
    frames = cogvideox.generate(model, request, runtime).frames
    return frames, take_skip_count(model.transformer)


def helios_frames(folder, runtime: Runtime) -> tuple[np.ndarray, dict | None]:
    model = helios.load(folder, runtime)
    settings = helios.HeliosSettings(history_sizes=(2, 1, 1))
    chunks = list(helios.generate_chunks(model, HELIOS, settings, runtime))
    return np.concatenate(chunks), take_skip_count(model.transformer)


def test_first_block_cache_at_threshold_zero_gives_the_uncached_frames(folders):
    plain, none = cogvideox_frames(folders["cogvideox"], Runtime())
    cached, counts = cogvideox_frames(folders["cogvideox"], Runtime(cache="first-block", cache_threshold=0.0))
    assert none is None and counts == {"calls": 6, "skipped": 0}
    assert np.array_equal(cached, plain)


def test_a_loose_first_block_threshold_skips_calls_and_batch_jobs_start_over(folders):
    runtime = Runtime(cache="first-block", cache_threshold=10.0)
    model = cogvideox.load(folders["cogvideox"], runtime)
    plain, _ = cogvideox_frames(folders["cogvideox"], Runtime())
    first = cogvideox.generate(model, COGVIDEOX, runtime).frames
    assert take_skip_count(model.transformer) == {"calls": 6, "skipped": 5}  # only the first step computes
    assert not np.array_equal(first, plain)
    # The next video starts with nothing cached: its first step computes again, and it repeats.
    again = cogvideox.generate(model, COGVIDEOX, runtime).frames
    assert take_skip_count(model.transformer) == {"calls": 6, "skipped": 5}
    assert np.array_equal(again, first)


def test_helios_cache_starts_over_every_chunk_and_threshold_zero_changes_nothing(folders):
    plain, _ = helios_frames(folders["helios"], Runtime())
    exact, counts = helios_frames(folders["helios"], Runtime(cache="first-block", cache_threshold=0.0))
    assert np.array_equal(exact, plain) and counts == {"calls": 12, "skipped": 0}  # 2 chunks x 3 steps x 2
    _, counts = helios_frames(folders["helios"], Runtime(cache="first-block", cache_threshold=10.0))
    # Per chunk, each guidance branch computes its first step and skips the other two.
    assert counts == {"calls": 12, "skipped": 8}


def test_taylorseer_predicts_attention_on_later_steps(folders):
    request = Request(**{**COGVIDEOX.__dict__, "steps": 10})
    plain, _ = cogvideox_frames(folders["cogvideox"], Runtime(), request)
    frames, counts = cogvideox_frames(folders["cogvideox"], Runtime(cache="taylorseer"), request)
    assert counts["calls"] == 10 and counts["skipped"] > 0
    assert frames.shape == plain.shape and not np.array_equal(frames, plain)


def test_the_sidecar_records_the_mode_and_the_skipped_calls(invoke_cli, offline_workdir):
    run = invoke_cli(
        "t2v", "--model", "tiny-cogvideox", "a cat", "--seed", "1", "--steps", "3", "--cache", "first-block",
        "--device", "cpu", "-o", "out.mp4", "--json",
    )  # fmt: skip
    assert run.exit_code == 0, run.stderr
    cache = json.loads(run.stdout)["runtime"]["cache"]
    assert cache["mode"] == "first-block" and cache["calls"] == 3 and 0 <= cache["skipped"] < 3
    assert json.loads((offline_workdir / "out.mp4.json").read_text())["runtime"]["cache"] == cache
    assert "--cache=first-block" in json.loads(run.stdout)["command"]


def test_pyramid_stages_start_the_cache_over_at_each_size(tmp_path):
    """Helios-Distilled denoises each chunk at three sizes: a cache kept across them compared tensors
    of different shapes and crashed."""
    folder = helios_tiny.build_tiny_helios(tmp_path / "distilled", variant="distilled")
    request = Request(mode="t2v", prompt="a cat", seed=3, guidance=1.0, height=64, width=128, frames=33)
    settings = helios.HeliosSettings(pyramid_steps=(2, 2, 2), amplify_first_chunk=False)

    def frames(runtime: Runtime) -> tuple[np.ndarray, dict | None]:
        model = helios.load(folder, runtime)
        chunks = list(helios.generate_chunks(model, request, settings, runtime))
        return np.concatenate(chunks), take_skip_count(model.transformer)

    plain, _ = frames(Runtime())
    exact, counts = frames(Runtime(cache="first-block", cache_threshold=0.0))
    assert np.array_equal(exact, plain) and counts == {"calls": 6, "skipped": 0}
    _, counts = frames(Runtime(cache="first-block", cache_threshold=10.0))
    assert counts == {"calls": 6, "skipped": 3}  # each stage computes its first step


def test_a_streams_sidecar_adds_up_the_calls_and_skips_of_every_chunk(
    invoke_cli, offline_workdir, monkeypatch
):
    from vidgen.families.helios import model as helios_model

    calls = []
    forward = helios_model.HeliosTransformer3DModel.forward
    monkeypatch.setattr(
        helios_model.HeliosTransformer3DModel, "forward", lambda *a, **k: calls.append(1) or forward(*a, **k)
    )
    run = invoke_cli(
        "stream", "--model", "tiny-helios-distilled", "a cat", "--seed", "1", "--frames", "66",
        "--cache", "first-block", "-o", "out.mp4", "--json",
    )  # fmt: skip
    assert run.exit_code == 0, run.stderr
    cache = json.loads(run.stdout)["runtime"]["cache"]
    assert cache["mode"] == "first-block" and cache["calls"] == len(calls) >= 6  # 2 chunks x 3 stages
    assert 0 <= cache["skipped"] < cache["calls"]
    assert json.loads((offline_workdir / "out.mp4.json").read_text())["runtime"]["cache"] == cache
