"""Wan 2.2 TI2V-5B text-to-video on the tiny `ti2v` folder (48 latent channels, the Wan 2.2 VAE with its
16x spatial scale, `expand_timesteps`): vidgen's pipeline against diffusers' WanPipeline seed for seed,
a timestep per token, sizes in 32-pixel steps read from the configs, `vidgen t2v --model tiny-wan2.2-ti2v`."""

import json

import diffusers
import imageio.v3 as iio
import numpy as np
import pytest
import torch
from parity import assert_uint8_matches
from wan_parity import diffusers_pipeline, forbid_loading, request, run_diffusers, tiny_wan, vidgen_frames

from vidgen.core.request import Runtime
from vidgen.families import registry
from vidgen.families.wan import pipeline as wan

REQUEST = request(seed=3, height=64, width=96)

folder = tiny_wan("ti2v")


@pytest.fixture(scope="module")
def reference(folder):
    pipe = diffusers_pipeline(diffusers.WanPipeline, folder)
    assert pipe.config.expand_timesteps and pipe.transformer_2 is None
    return run_diffusers(pipe, REQUEST)


def test_the_tiny_folder_is_ti2v_shaped_with_a_16x_vae(folder):
    vae = json.loads((folder / "vae" / "config.json").read_text())
    assert (vae["z_dim"], vae["is_residual"], vae["patch_size"], vae["scale_factor_spatial"]) == (
        48,
        True,
        2,
        16,
    )
    transformer = json.loads((folder / "transformer" / "config.json").read_text())
    assert transformer["in_channels"] == transformer["out_channels"] == 48
    assert registry.detect(folder).name == "wan"
    info = registry.read_info(folder)
    assert (info.architecture, info.experts, info.spatial_scale, info.size_multiple) == (
        "wan2.2-ti2v-5b",
        1,
        16,
        32,
    )


def test_the_frames_are_within_one_level_of_wan_pipeline_with_a_timestep_per_token(folder, reference):
    model = wan.load(folder, Runtime())
    timesteps = []
    model.transformer.register_forward_pre_hook(
        lambda module, args, kwargs: timesteps.append(kwargs["timestep"]), with_kwargs=True
    )
    frames = vidgen_frames(model, REQUEST)
    assert frames.shape == (9, 64, 96, 3)
    assert_uint8_matches(frames, reference)
    # 3 latent frames of 4x6 cells in 2x2 patches: 3 x 2 x 3 tokens, each with the step's timestep
    first = timesteps[0]
    assert first.shape == (1, 18) and torch.all(first == first[0, 0])


@pytest.mark.parametrize(
    ("option", "message", "hint"),
    [
        (("--height", "48"), "--height 48 is not a multiple of 32", "use --height 32 or 64"),
        (("--width", "80"), "--width 80 is not a multiple of 32", "use --width 64 or 96"),
    ],
)
def test_a_size_off_the_32_pixel_grid_is_a_one_line_error_before_loading(
    option, message, hint, vidgen, offline_workdir, monkeypatch
):
    forbid_loading(monkeypatch)
    run = vidgen("t2v", "--model", "tiny-wan2.2-ti2v", "--prompt", "a cat", *option, "-o", "cat.mp4")
    assert run.exit_code == 2, run.stderr
    assert message in run.stderr and hint in run.stderr
    assert len(run.stderr_lines) == 1 and "Traceback" not in run.stderr
    assert not (offline_workdir / "cat.mp4").exists()


def test_vidgen_t2v_with_tiny_wan2_2_ti2v_writes_the_video(vidgen, offline_workdir):
    run = vidgen(
        "t2v", "--model", "tiny-wan2.2-ti2v", "--prompt", "a cat", "--seed", "3", "-o", "cat.mp4", "-q"
    )
    assert run.exit_code == 0, run.stderr
    frames = np.stack(list(iio.imiter(offline_workdir / "cat.mp4")))
    assert frames.shape == (9, 64, 96, 3)
    sidecar = json.loads((offline_workdir / "cat.mp4.json").read_text())
    assert sidecar["model"]["preset"] == "tiny-wan2.2-ti2v" and "guidance_2" not in sidecar["settings"]
