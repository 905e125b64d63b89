"""A mag-ratios file damaged in ways json and float() do not take lightly (an integer of hundreds of
digits, tens of thousands of nested brackets) is a damaged store like any other: measured again, with a
note, instead of an OverflowError or RecursionError on every `--cache mag` run."""

import json

import numpy as np
import pytest

from vidgen.core.request import Request, Runtime
from vidgen.families.cogvideox import pipeline as cogvideox
from vidgen.runtime.levers import take_skip_count
from vidgen.runtime.mag_cache import STORE_FORMAT, read_ratios, store_path, weights_fingerprint

REQUEST = Request(mode="t2v", prompt="a cat", seed=3, steps=3, guidance=6.0, height=64, width=96, frames=9)
KEY = "999.000,666.000,333.000"
DAMAGES = {
    "a 400-digit integer": (
        json.dumps({"format": STORE_FORMAT, "schedules": {KEY: [1.0, 1.0]}}).replace(
            "[1.0, 1.0]", f"[1.0, {'9' * 400}, 1.0]"
        ),
        "its ratios for one schedule are not 3 positive numbers",
    ),
    "a 5000-digit integer": ('{"schedules": [' + "9" * 5000 + "]}", "unreadable (a number too long to read)"),
    "50,000 nested brackets": ("[" * 50_000 + "]" * 50_000, "unreadable (nested too deeply)"),
}


@pytest.mark.parametrize("damage", DAMAGES, ids=list(DAMAGES))
def test_a_damaged_ratios_file_is_read_as_damaged(tmp_path, damage):
    text, problem = DAMAGES[damage]
    path = tmp_path / "ratios.json"
    path.write_text(text)
    assert read_ratios(path) == ({}, problem)


def test_a_run_over_a_ratios_file_with_a_huge_integer_measures_again_with_a_note(
    tiny_folder, tmp_path, monkeypatch
):
    monkeypatch.setenv("VIDGEN_CACHE", str(tmp_path))
    folder = tiny_folder("cogvideox", "t2v")
    uncached = cogvideox.generate(cogvideox.load(folder, Runtime()), REQUEST, Runtime()).frames
    runtime = Runtime(cache="mag", cache_threshold=10.0)
    model = cogvideox.load(folder, runtime)
    path = store_path(weights_fingerprint(model.transformer))
    text, problem = DAMAGES["a 400-digit integer"]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    model = cogvideox.load(folder, runtime)  # reads the store as it loads
    frames = cogvideox.generate(model, REQUEST, runtime).frames
    assert model.transformer.mag_cache.notes[0] == (
        f"--cache mag: the stored ratios in {path} are {problem}; measuring them again"
    )
    assert np.array_equal(frames, uncached) and take_skip_count(model.transformer)["ratios"] == "measured"
