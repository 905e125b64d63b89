"""Every lever on both experts of Wan 2.2 A14B (the tiny `t2v-a14b` folder, 4 steps: two for the
high-noise expert, two for the low-noise one): `--compile` compiles both (one graph, one compile stage),
each step cache keeps a state per expert (and the mag cache measures each expert's own stretch of
steps), `--quantize int8` shrinks both, `--attention` sets both, and the sidecar counts both experts'
calls."""

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from wan_parity import request, tiny_wan

from vidgen.core.request import Request, Runtime
from vidgen.families.layers import DispatchedAttention
from vidgen.families.wan import pipeline as wan
from vidgen.runtime import levers
from vidgen.runtime.attention import ATTENTION_BACKENDS
from vidgen.runtime.levers import take_skip_count
from vidgen.runtime.memory.quantize import weight_bytes

REQUEST = Request(**request(steps=4, guidance=4.0, guidance_2=2.5))
LOOSE = 10.0  # a threshold every step after an expert's first passes: skipping is certain


folder = tiny_wan("t2v-a14b")


@pytest.fixture(scope="module")
def plain(folder):
    return wan.generate(wan.load(folder, Runtime()), REQUEST, Runtime()).frames


def experts(model: wan.Wan) -> tuple:
    return model.transformer, model.transformer_2


def block_calls(model: wan.Wan) -> list[list[int]]:
    """Per expert, per block: the calls that ran it (its feed-forward runs exactly then)."""
    calls = [[0] * len(transformer.blocks) for transformer in experts(model)]
    for expert, transformer in enumerate(experts(model)):
        for index, block in enumerate(transformer.blocks):
            block.ffn.register_forward_pre_hook(
                lambda _, args, e=expert, i=index: calls[e].__setitem__(i, calls[e][i] + 1)
            )
    return calls


class Stages:
    """A progress that records its stages."""

    def __init__(self) -> None:
        self.stages: list[str] = []
        self.notes: list[str] = []

    def start_stage(self, name: str, total: int | None = None) -> None:
        self.stages.append(name)

    def advance(self, steps: int = 1) -> None:
        pass

    def end_stage(self) -> None:
        pass

    def note(self, line: str) -> None:
        self.notes.append(line)


def test_compile_runs_both_experts_compiled_with_one_graph_and_one_compile_stage(folder, plain, monkeypatch):
    torch._dynamo.reset()
    graph_calls = []

    def backend(graph, inputs):  # counts every call of the compiled block graph, whichever expert's
        def run(*args):
            graph_calls.append(1)
            return graph.forward(*args)

        return run

    monkeypatch.setattr(levers, "COMPILE_OPTIONS", {"backend": backend, "fullgraph": True})
    runtime = Runtime(compile=True)
    model = wan.load(folder, runtime)
    progress, timings = Stages(), {}
    try:
        with levers.compiling(runtime, timings):
            frames = wan.generate(model, REQUEST, runtime, progress).frames
    finally:
        torch._dynamo.reset()
    # 2 blocks x 2 guidance branches x 4 steps, half of them the low-noise expert's: all compiled.
    assert len(graph_calls) == 2 * 2 * 4
    assert np.abs(frames.astype(int) - plain).max() <= 1
    assert progress.stages == ["text", "compile", "denoise", "decode"]
    assert timings["compile"] > 0
    assert not any(getattr(t, "compile_pending", False) for t in experts(model))  # neither is left to show


def test_first_block_cache_keeps_a_state_per_expert(folder):
    runtime = Runtime(cache="first-block", cache_threshold=LOOSE)
    model = wan.load(folder, runtime)
    calls = block_calls(model)
    wan.generate(model, REQUEST, runtime)
    # Each expert computes its own first step in full, per guidance branch: the low-noise expert never
    # skips on the high-noise one's residuals.
    assert calls == [[4, 2], [4, 2]]
    assert take_skip_count(*experts(model)) == {"calls": 8, "skipped": 4}


def test_taylorseer_predicts_on_each_experts_own_steps(folder, plain):
    request = replace(REQUEST, steps=12)
    runtime = Runtime(cache="taylorseer")
    model = wan.load(folder, runtime)
    wan.generate(model, request, runtime)
    high, low = (take_skip_count(transformer) for transformer in experts(model))
    # TaylorSeer computes each expert's first 3 steps before predicting: its own count of steps.
    assert high["calls"] + low["calls"] == 24
    assert high["skipped"] > 0 and low["skipped"] > 0
    assert high["calls"] - high["skipped"] >= 2 * 3 and low["calls"] - low["skipped"] >= 2 * 3


def test_mag_cache_measures_each_experts_stretch_then_skips_on_both(folder, plain, tmp_path, monkeypatch):
    monkeypatch.setenv("VIDGEN_CACHE", str(tmp_path))  # an empty ratio store
    runtime = Runtime(cache="mag", cache_threshold=LOOSE)
    model = wan.load(folder, runtime)
    progress = Stages()
    assert np.array_equal(wan.generate(model, REQUEST, runtime, progress).frames, plain)
    measured = take_skip_count(*experts(model))
    assert (measured["calls"], measured["skipped"], measured["ratios"]) == (8, 0, "measured")
    assert len(measured["ratios_file"]) == 2  # one store per expert's weights
    # Each expert's file holds its own stretch: 2 timesteps, not the whole schedule.
    schedules = [json.loads(Path(path).read_text())["schedules"] for path in measured["ratios_file"]]
    assert [len(next(iter(s)).split(",")) for s in schedules] == [2, 2] and schedules[0] != schedules[1]
    assert sum("measuring" in note for note in progress.notes) == 2  # both experts' notes are shown
    again = wan.load(folder, runtime)
    calls = block_calls(again)
    wan.generate(again, REQUEST, runtime)
    high, low = (take_skip_count(transformer) for transformer in experts(again))
    assert high["ratios"] == low["ratios"] == "stored" and high["skipped"] > 0 and low["skipped"] > 0
    assert calls == [[4 - high["skipped"]] * 2, [4 - low["skipped"]] * 2]


def test_int8_quantizes_both_experts(folder):
    full = wan.load(folder, Runtime())
    model = wan.load(folder, Runtime(quantize="int8"))
    for quantized, plain_expert in zip(experts(model), experts(full), strict=True):
        assert weight_bytes(quantized) < 0.75 * weight_bytes(plain_expert)
    frames = wan.generate(model, REQUEST, Runtime(quantize="int8")).frames
    assert frames.shape == (9, 32, 48, 3)


def test_attention_backend_is_set_on_both_experts(folder, plain):
    runtime = Runtime(attention="flex")
    model = wan.load(folder, runtime)
    for transformer in experts(model):
        layers = [m for m in transformer.modules() if isinstance(m, DispatchedAttention)]
        assert len(layers) == 4 and {layer.backend.value for layer in layers} == {
            ATTENTION_BACKENDS["flex"].diffusers
        }
    assert np.abs(wan.generate(model, REQUEST, runtime).frames.astype(int) - plain).max() <= 1


def test_the_sidecar_counts_both_experts_calls_and_the_replay_file_holds_both_experts_ratios(
    vidgen, offline_workdir, monkeypatch
):
    monkeypatch.setenv("VIDGEN_CACHE", str(offline_workdir / "cache"))
    command = ("t2v", "-m", "tiny-wan2.2", "a cat", "--steps", "4", "--cache", "mag", "-q", "--device", "cpu")
    sidecars = []
    for name in ("first", "second"):
        run = vidgen(*command, "-o", f"{name}.mp4")
        assert run.exit_code == 0, run.stderr
        sidecars.append(json.loads((offline_workdir / f"{name}.mp4.json").read_text()))
    measured, stored = (sidecar["runtime"]["cache"] for sidecar in sidecars)
    # 4 steps x 2 guidance branches, two steps each expert's.
    assert (measured["calls"], measured["skipped"], measured["ratios"]) == (8, 0, "measured")
    assert (stored["calls"], stored["ratios"]) == (8, "stored") and stored["skipped"] > 0
    # The replay reads both experts' ratios (each under its own stretch's timesteps) from one file.
    replay = offline_workdir / "second.mp4.mag-ratios.json"
    assert f"--mag-ratios={replay.name}" in sidecars[1]["command"]
    assert len(json.loads(replay.read_text())["schedules"]) == 2
