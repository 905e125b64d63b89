"""Wan 2.2 image-to-video on the tiny folders: TI2V-5B's text folder run as image-to-video (the image is
the first latent frame, kept clean by a zero timestep on its tokens) and I2V A14B's two experts (the
image, and optionally a last image, in the latents alone), each against diffusers'
WanImageToVideoPipeline seed for seed; `vidgen i2v` on their presets."""

import json

import diffusers
import imageio.v3 as iio
import numpy as np
import pytest
import torch
from parity import assert_uint8_matches
from PIL import Image
from wan_parity import diffusers_frames, request, tiny_wan, vidgen_frames

from vidgen.core.request import Request, Runtime
from vidgen.families import registry
from vidgen.families.wan import pipeline as wan

_pixels = np.random.default_rng(2)
FIRST = _pixels.integers(0, 256, (40, 56, 3), dtype=np.uint8)
LAST = _pixels.integers(0, 256, (40, 56, 3), dtype=np.uint8)

# 3 steps: timesteps 999, 857, 600, so A14B's high-noise expert (t >= 900) runs one, the low-noise two.
REQUEST = request(mode="i2v", seed=5, image=FIRST)
TI2V = {**REQUEST, "height": 64, "width": 96}  # TI2V-5B's 16x VAE: 32-pixel steps
A14B = {**REQUEST, "guidance_2": 3.0}


ti2v = tiny_wan("ti2v")
a14b = tiny_wan("i2v-a14b")


def test_the_folders_read_as_image_to_video():
    ti2v = registry.read_info(registry.ensure_tiny("wan", "ti2v"))
    a14b = registry.read_info(registry.ensure_tiny("wan", "i2v-a14b"))
    assert (ti2v.modes, ti2v.last_image) == (("t2v", "i2v"), "never")
    assert (a14b.architecture, a14b.modes, a14b.experts, a14b.last_image) == (
        "wan2.2-i2v-a14b",
        ("i2v",),
        2,
        "optional",
    )


def test_ti2v_image_to_video_matches_diffusers_with_the_first_frame_clean(ti2v):
    model = wan.load(ti2v, Runtime())
    timesteps = []
    model.transformer.register_forward_pre_hook(
        lambda module, args, kwargs: timesteps.append(kwargs["timestep"]), with_kwargs=True
    )
    request = Request(**TI2V)
    frames = vidgen_frames(model, request)
    assert frames.shape == (9, 64, 96, 3)
    assert_uint8_matches(frames, diffusers_frames(diffusers.WanImageToVideoPipeline, ti2v, request))
    # 3 latent frames of 4x6 cells in 2x2 patches: 6 tokens a frame; the image's are at timestep 0.
    first = timesteps[0]
    assert first.shape == (1, 18) and torch.all(first[0, :6] == 0) and torch.all(first[0, 6:] == 999)


@pytest.mark.parametrize("last", [None, LAST], ids=["first-frame", "first-last-frame"])
def test_a14b_image_to_video_matches_diffusers_with_both_experts(a14b, last):
    model = wan.load(a14b, Runtime())
    calls = {"transformer": 0, "transformer_2": 0}
    for name in calls:
        getattr(model, name).register_forward_pre_hook(
            lambda *args, name=name: calls.__setitem__(name, calls[name] + 1)
        )
    request = Request(**{**A14B, "last_image": last})
    frames = vidgen_frames(model, request)
    assert_uint8_matches(frames, diffusers_frames(diffusers.WanImageToVideoPipeline, a14b, request))
    assert calls == {"transformer": 2, "transformer_2": 4}  # guided: two calls a step


@pytest.fixture
def pictures(offline_workdir):
    Image.fromarray(FIRST).save(offline_workdir / "first.png")
    Image.fromarray(LAST).save(offline_workdir / "last.png")
    return offline_workdir


def test_vidgen_i2v_runs_the_tiny_2_2_presets(vidgen, pictures):
    images = ("--image", "first.png", "--last-image", "last.png")
    run = vidgen(
        "i2v", "--model", "tiny-wan2.2-i2v", *images, "-p", "a cat", "--guidance-2", "2", "-o", "a.mp4"
    )
    assert run.exit_code == 0, (run.stderr, run.exception)
    assert np.stack(list(iio.imiter(pictures / "a.mp4"))).shape == (9, 32, 48, 3)
    sidecar = json.loads((pictures / "a.mp4.json").read_text())
    assert (sidecar["settings"]["guidance_2"], sidecar["settings"]["last_image"]) == (2.0, "last.png")
    run = vidgen("i2v", "--model", "tiny-wan2.2-ti2v", "--image", "first.png", "-p", "a cat", "-o", "b.mp4")
    assert run.exit_code == 0, (run.stderr, run.exception)
    assert np.stack(list(iio.imiter(pictures / "b.mp4"))).shape == (9, 64, 96, 3)


def test_ti2v_takes_no_last_image_and_the_two_expert_text_folder_no_video(vidgen, pictures):
    run = vidgen(
        "i2v", "--model", "tiny-wan2.2-ti2v", "--image", "first.png", "--last-image", "last.png", "-p", "a"
    )
    assert run.exit_code == 2 and "cannot take --last-image" in run.stderr
    iio.imwrite(pictures / "clip.gif", np.zeros((9, 32, 48, 3), np.uint8), duration=60)
    run = vidgen("v2v", "--model", "tiny-wan2.2", "--video", "clip.gif", "-p", "a")
    assert run.exit_code == 2 and "cannot do video-to-video: it takes no input video" in run.stderr
