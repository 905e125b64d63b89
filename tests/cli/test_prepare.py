"""What `prepare` fills in when the user leaves it to the model: defaults, dtype, output name, seed."""

import inspect
import io
import json
import shutil

import diffusers
import numpy as np
import pytest
import torch
from PIL import Image

from vidgen.app.prepare import prepare
from vidgen.families import registry
from vidgen.io.writer import VideoWriter
from vidgen.validate.common import Options, default_output_name


def plan_for(model: str, mode: str = "t2v", **options):
    return prepare(Options(mode=mode, model=model, prompt="a cat walks", seed=1, **options))


def test_a_preset_gives_its_own_settings():
    plan = plan_for("tiny-cogvideox")
    request = plan.request
    assert (request.height, request.width, request.frames, request.steps, request.fps) == (64, 96, 9, 4, 8)
    assert plan.runtime.dtype == torch.float32 and plan.preset.name == "tiny-cogvideox"
    assert plan.output.path.name == "a-cat-walks-1.mp4" and plan.output.format == "mp4"


def released_2b(tmp_path):
    """The tiny folder with CogVideoX-2b's released transformer config (diffusers' defaults); only its
    configs are read."""
    folder = shutil.copytree(registry.ensure_tiny("cogvideox", "t2v"), tmp_path / "released-2b")
    parameters = inspect.signature(diffusers.CogVideoXTransformer3DModel.__init__).parameters.values()
    config = {p.name: p.default for p in parameters if p.default is not inspect.Parameter.empty}
    (folder / "transformer" / "config.json").write_text(json.dumps(config))
    return folder


def test_a_folder_gets_the_released_preset_of_its_config_with_fp16_made_fp32_on_cpu(tmp_path):
    plan = plan_for(str(released_2b(tmp_path)), device="cpu")
    assert plan.preset.name == "cogvideox-2b" and plan.source.kind == "folder"
    assert (plan.request.height, plan.request.width, plan.request.frames) == (480, 720, 49)
    assert plan.runtime.dtype == torch.float32
    assert any("fp32 on the CPU instead of cogvideox-2b's fp16" in note for note in plan.notes)


def test_an_explicit_dtype_is_kept_on_cpu():
    plan = plan_for(str(registry.ensure_tiny("cogvideox", "t2v")), device="cpu", dtype="fp16")
    assert plan.runtime.dtype == torch.float16 and not any("fp32" in note for note in plan.notes)


def test_a_folder_that_is_no_released_model_runs_at_its_own_sample_size():
    # Tiny folders are shaped like released models but are none: their own sample size and scheduler
    # (tests/hub/test_own_defaults.py has the rest).
    i2v = plan_for(str(registry.ensure_tiny("cogvideox", "i2v")), mode="i2v", image=str(_image()))
    assert (i2v.request.height, i2v.request.width, i2v.request.frames) == (64, 96, 9)
    t15 = plan_for(str(registry.ensure_tiny("cogvideox", "1.5-t2v")))
    assert t15.preset.name == "none"
    assert (t15.request.height, t15.request.width, t15.request.frames) == (64, 96, 9)
    assert dict(t15.request.scheduler) == {}
    assert not any("trained on" in note for note in t15.notes)


def _image():
    Image.new("RGB", (96, 64)).save("photo.png")
    return "photo.png"


def test_frames_off_the_trained_rule_run_with_a_note():
    plan = plan_for("tiny-cogvideox1.5", frames=25)  # trained on 16N+1
    assert any("trained on 16N+1 frames" in note for note in plan.notes)


def test_1_5_video_to_video_notes_the_longer_output(workdir):
    with VideoWriter.open(workdir / "clip.gif", fps=8, format="gif") as writer:
        writer.write(np.stack([np.full((64, 96, 3), 20 * i, np.uint8) for i in range(13)]))
    plan = plan_for("tiny-cogvideox1.5", mode="v2v", video="clip.gif")
    assert plan.request.frames == 13 and plan.request.video.shape == (13, 64, 96, 3)
    assert any("output will have 16 frames for 13 input frames" in note for note in plan.notes)


def test_without_a_seed_a_random_one_is_chosen_and_noted():
    plan = prepare(Options(mode="t2v", model="tiny-cogvideox", prompt="a cat"))
    assert f"--seed {plan.request.seed} repeats" in plan.notes[0]


def test_the_prompt_can_come_from_stdin():
    plan = prepare(
        Options(mode="t2v", model="tiny-cogvideox", prompt_argument="-", seed=1), io.StringIO(" a dog\n")
    )
    assert plan.request.prompt == "a dog"


@pytest.mark.parametrize(
    "prompt, format, name",
    [
        ("A cat walks on the beach, at night!", "mp4", "a-cat-walks-on-the-beach-5.mp4"),
        ("東京の夜", "gif", "video-5.gif"),
        ("frames", "png", "frames-5"),
    ],
)
def test_default_output_name_comes_from_the_prompt_and_seed(prompt, format, name):
    assert str(default_output_name(prompt, 5, format)) == name
