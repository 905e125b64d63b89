"""vidgen's transformers inside diffusers' own pipelines: the same frames as with diffusers' transformer.

Each case runs one diffusers pipeline from a tiny folder twice, once as loaded and once with vidgen's
transformer passed in its place, and compares the frames within float rounding (the transformers
agree to ~1e-6 relative; see tests/models).
"""

import diffusers
import numpy as np
import pytest
import torch
from parity import assert_uint8_matches, to_uint8

from vidgen.models import CogVideoXTransformer3DModel, HeliosTransformer3DModel

FLOAT_TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def folders(tiny_folder):
    names = {
        "cogvideox": ("cogvideox", "t2v"),
        "helios": ("helios", "base"),
        "helios-distilled": ("helios", "distilled"),
    }
    return {name: tiny_folder(*model) for name, model in names.items()}


CASES = {
    "cogvideox": (
        CogVideoXTransformer3DModel,
        dict(num_inference_steps=2, guidance_scale=6.0, height=64, width=96, num_frames=9),
    ),
    "helios": (
        HeliosTransformer3DModel,
        dict(num_inference_steps=2, guidance_scale=5.0, height=32, width=48, num_frames=66),
    ),
    "helios-distilled": (
        HeliosTransformer3DModel,
        dict(
            pyramid_num_inference_steps_list=[1, 1, 1],
            is_amplify_first_chunk=True,
            guidance_scale=1.0,
            height=64,
            width=128,
            num_frames=33,
        ),
    ),
}


def frames(folder, inputs: dict, **components) -> np.ndarray:
    pipe = diffusers.DiffusionPipeline.from_pretrained(folder, **components)
    pipe.set_progress_bar_config(disable=True)
    generator = torch.Generator("cpu").manual_seed(5)
    return pipe("a red panda in the snow", generator=generator, output_type="np", **inputs).frames[0]


@pytest.mark.parametrize("name", CASES)
def test_diffusers_pipeline_with_vidgen_transformer_gives_diffusers_frames(
    name, folders, never_failing_block_noise
):
    cls, inputs = CASES[name]
    folder = folders[name]
    reference = frames(folder, inputs)
    ours = cls.from_pretrained(folder, subfolder="transformer").eval()
    swapped = frames(folder, inputs, transformer=ours)
    assert swapped.shape == reference.shape
    assert np.abs(swapped - reference).max() <= FLOAT_TOLERANCE
    assert_uint8_matches(to_uint8(swapped), to_uint8(reference))


def test_diffusers_pipeline_runs_vidgens_transformer_with_a_step_cache(folders, never_failing_block_noise):
    from vidgen.runtime.levers import enable_step_cache, take_skip_count

    _, inputs = CASES["cogvideox"]
    plain = CogVideoXTransformer3DModel.from_pretrained(folders["cogvideox"], subfolder="transformer").eval()
    reference = frames(folders["cogvideox"], inputs, transformer=plain)
    cached = CogVideoXTransformer3DModel.from_pretrained(folders["cogvideox"], subfolder="transformer").eval()
    enable_step_cache(cached, "first-block", threshold=0.0)
    assert np.array_equal(frames(folders["cogvideox"], inputs, transformer=cached), reference)
    assert take_skip_count(cached) == {"calls": 2, "skipped": 0}


@pytest.mark.parametrize("name", ["cogvideox", "helios"])
def test_a_saved_diffusers_pipeline_loads_vidgens_transformer_back(name, folders, tmp_path, monkeypatch):
    """diffusers names a component's class in model_index.json by its module path; vidgen's must be one
    it can import again (a path under a folder named like a diffusers pipeline folder is not)."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cls, _ = CASES[name]
    ours = cls.from_pretrained(folders[name], subfolder="transformer")
    pipe = diffusers.DiffusionPipeline.from_pretrained(folders[name], transformer=ours)
    pipe.save_pretrained(tmp_path / "saved")
    again = diffusers.DiffusionPipeline.from_pretrained(tmp_path / "saved")
    assert type(again.transformer) is cls
