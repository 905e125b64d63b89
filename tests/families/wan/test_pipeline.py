"""Wan 2.1 text-to-video through the registry, on the tiny folder: vidgen's pipeline against diffusers'
WanPipeline seed for seed, the request rules' one-line errors, and `vidgen t2v --model tiny-wan`."""

import json

import diffusers
import imageio.v3 as iio
import numpy as np
import pytest
from wan_parity import (
    assert_within_one_level,
    diffusers_reference,
    forbid_loading,
    request,
    tiny_wan,
    vidgen_frames,
    with_diffusers_transformers,
)

from vidgen.core.request import Runtime
from vidgen.families import registry
from vidgen.families.wan import pipeline as wan

REQUEST = request()  # guided, a negative prompt, 3 UniPC steps (its multistep orders 1 to 3), 9 frames

folder = tiny_wan("t2v")


reference = diffusers_reference(diffusers.WanPipeline, REQUEST)


def test_the_tiny_folder_is_a_wan_pipeline_with_a_flow_unipc_sampler(folder):
    index = json.loads((folder / "model_index.json").read_text())
    assert index["_class_name"] == "WanPipeline"
    scheduler = json.loads((folder / "scheduler" / "scheduler_config.json").read_text())
    assert scheduler["_class_name"] == "UniPCMultistepScheduler"
    assert scheduler["use_flow_sigmas"] and scheduler["prediction_type"] == "flow_prediction"
    assert registry.detect(folder).name == "wan"
    info = registry.read_info(folder)
    expected = ("wan", ("t2v", "v2v"), 16, 4)
    assert (info.family, info.modes, info.size_multiple, info.temporal_scale) == expected


def test_with_diffusers_transformer_the_frames_equal_wan_pipeline_bit_for_bit(folder, reference):
    model = with_diffusers_transformers(wan.load(folder, Runtime()), folder)
    np.testing.assert_array_equal(vidgen_frames(model, REQUEST), reference)


def test_with_vidgens_transformer_the_frames_are_within_one_level_of_wan_pipeline(folder, reference):
    assert_within_one_level(vidgen_frames(folder, REQUEST), reference, (9, 32, 48, 3))


def test_guidance_and_the_negative_prompt_change_the_video(folder):
    model = wan.load(folder, Runtime())
    guided = vidgen_frames(model, REQUEST)
    other_negative = vidgen_frames(model, {**REQUEST, "negative_prompt": "sharp"})
    unguided = vidgen_frames(model, {**REQUEST, "guidance": 1.0})
    assert not np.array_equal(guided, other_negative)
    assert not np.array_equal(guided, unguided)


@pytest.mark.parametrize(
    ("option", "message", "hint"),
    [
        (("--height", "40"), "--height 40 is not a multiple of 16", "use --height 32 or 48"),
        (("--width", "50"), "--width 50 is not a multiple of 16", "use --width 48 or 64"),
        (("--frames", "10"), "--frames 10 is not of the form 4k+1", "use --frames 9 or 13"),
    ],
)
def test_a_bad_size_or_frame_count_is_a_one_line_error_before_loading(
    option, message, hint, vidgen, offline_workdir, monkeypatch
):
    forbid_loading(monkeypatch)
    run = vidgen("t2v", "--model", "tiny-wan", "--prompt", "a cat", *option, "-o", "cat.mp4")
    assert run.exit_code == 2, run.stderr
    assert message in run.stderr and hint in run.stderr
    assert "Traceback" not in run.stderr
    assert len([line for line in run.stderr.splitlines() if line.startswith("error")]) == 1
    assert not (offline_workdir / "cat.mp4").exists()


def test_vidgen_t2v_with_tiny_wan_writes_the_video(vidgen, offline_workdir):
    run = vidgen("t2v", "--model", "tiny-wan", "--prompt", "a cat", "--seed", "3", "-o", "cat.mp4", "-q")
    assert run.exit_code == 0, run.stderr
    frames = np.stack(list(iio.imiter(offline_workdir / "cat.mp4")))
    assert frames.shape == (9, 32, 48, 3)
    sidecar = json.loads((offline_workdir / "cat.mp4.json").read_text())
    assert sidecar["model"]["preset"] == "tiny-wan"


def test_a_folder_of_a_kind_no_preset_describes_is_a_one_line_error(folder):
    """Without a preset of the folder's family and modes there are no defaults to run it on: one line
    naming the model and the fix, not a ValueError's traceback."""
    from vidgen.app.prepare import resolve_model
    from vidgen.core.errors import VidgenError
    from vidgen.weights.presets import load_presets
    from vidgen.weights.sources import parse_model

    others = {name: preset for name, preset in load_presets().items() if preset.family != "wan"}
    with pytest.raises(VidgenError) as error:
        resolve_model(parse_model(str(folder), others), others)
    assert "Wan wan2.1-t2v model" in str(error.value) and "VIDGEN_PRESETS" in error.value.hint
