"""`--compile` on Wan 2.1: the regional compile of `WanTransformerBlock` gives every block one graph,
without graph breaks, and later videos (another prompt, another seed) compile nothing more; inductor's
frames are within one uint8 level of eager through `vidgen t2v`.

Recompiles are counted with the `aot_eager` backend (traces as inductor does, generates no code).
"""

import json
from dataclasses import replace

import numpy as np
import pytest
import torch
from parity import read_png_folder
from torch._dynamo.testing import CompileCounterWithBackend
from wan_parity import request

from vidgen.core.request import Request, Runtime
from vidgen.families.wan import pipeline as wan
from vidgen.runtime import levers

REQUEST = Request(**request(prompt="a cat", seed=1, steps=2))


@pytest.fixture(autouse=True)
def fresh_dynamo():
    """Compiled code is cached per code object across models: every test starts from nothing."""
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def test_blocks_share_one_graph_without_breaks_and_later_videos_compile_nothing(tiny_folder, monkeypatch):
    counter = CompileCounterWithBackend("aot_eager")
    monkeypatch.setattr(levers, "COMPILE_OPTIONS", {"backend": counter, "fullgraph": True})
    folder = tiny_folder("wan", "t2v")
    eager = wan.generate(wan.load(folder, Runtime()), REQUEST, Runtime()).frames
    runtime = Runtime(compile=True)
    model = wan.load(folder, runtime)
    compiled = wan.generate(model, REQUEST, runtime).frames
    assert counter.frame_count == 1  # two blocks, both guidance branches, both steps: one graph
    assert np.abs(compiled.astype(int) - eager).max() <= 1
    wan.generate(model, replace(REQUEST, prompt="a dog on a long and winding road", seed=2), runtime)
    assert counter.frame_count == 1


def test_inductor_frames_are_within_one_level_of_eager(vidgen, offline_workdir):
    command = (
        "t2v",
        "-m",
        "tiny-wan",
        "a cat",
        "--seed",
        "2",
        "--format",
        "png",
        "--quiet",
        "--device",
        "cpu",
    )
    assert vidgen(*command, "-o", "eager").exit_code == 0
    run = vidgen(*command, "-o", "compiled", "--compile")
    assert run.exit_code == 0, run.stderr
    eager, compiled = (
        read_png_folder(offline_workdir / "eager"),
        read_png_folder(offline_workdir / "compiled"),
    )
    assert compiled.shape == eager.shape == (9, 32, 48, 3)
    assert np.abs(compiled.astype(int) - eager).max() <= 1
    sidecar = json.loads((offline_workdir / "compiled.json").read_text())
    assert sidecar["runtime"]["compile"] is True and sidecar["timings"]["compile"] > 0
