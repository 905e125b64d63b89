"""`vidgen t2v/i2v --model tiny-helios*`: the chunk generator behind the usual commands, frame for frame
what diffusers' Helios pipelines make from the same folder, seed and preset settings.

PNG outputs are lossless; vidgen's transformer equals diffusers' to float rounding, so the bound is the
one tests/pipelines/test_helios.py explains (max 1 uint8 level, >= 99.9% of values identical).
"""

import json

import diffusers
import numpy as np
import torch
from parity import assert_uint8_matches, read_png_folder
from PIL import Image

from vidgen.families import registry

SEED = 7


def diffusers_frames(variant: str, **inputs) -> np.ndarray:
    pipe = diffusers.DiffusionPipeline.from_pretrained(registry.ensure_tiny("helios", variant))
    pipe.set_progress_bar_config(disable=True)
    generator = torch.Generator("cpu").manual_seed(SEED)
    frames = pipe(**inputs, max_sequence_length=512, generator=generator, output_type="np").frames[0]
    return (frames * 255).round().astype(np.uint8)


def test_t2v_with_tiny_helios_equals_diffusers_helios_pipeline(vidgen, workdir):
    run = vidgen(
        "t2v", "--model", "tiny-helios", "a cat walks", "--seed", str(SEED), "--format", "png", "-o", "t2v"
    )
    assert run.exit_code == 0, run.stderr
    assert run.stdout.startswith("wrote t2v (33 frames, 48x32, 24 fps, seed 7)")
    sidecar = json.loads((workdir / "t2v.json").read_text())
    assert sidecar["settings"]["max_sequence_length"] == 512 and sidecar["settings"]["steps"] == 2
    reference = diffusers_frames(
        "base", prompt="a cat walks", negative_prompt="", num_inference_steps=2, guidance_scale=5.0,
        height=32, width=48, num_frames=33,
    )  # fmt: skip
    assert_uint8_matches(read_png_folder(workdir / "t2v"), reference)


def test_i2v_with_tiny_helios_distilled_uses_the_presets_pyramid(vidgen, workdir, never_failing_block_noise):
    pixels = np.random.default_rng(0).integers(0, 256, (72, 100, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(workdir / "photo.png")
    run = vidgen(
        "i2v", "--model", "tiny-helios-distilled", "--image", "photo.png", "a wave breaks",
        "--seed", str(SEED), "--format", "png", "-o", "i2v", "--quiet",
    )  # fmt: skip
    assert run.exit_code == 0, run.stderr
    sidecar = json.loads((workdir / "i2v.json").read_text())
    assert sidecar["settings"]["pyramid_steps"] == [1, 1, 1] and sidecar["settings"]["amplify_first_chunk"]
    # The preset: one step per stage, no guidance, the first chunk amplified.
    reference = diffusers_frames(
        "distilled", prompt="a wave breaks", negative_prompt="", image=Image.open(workdir / "photo.png"),
        pyramid_num_inference_steps_list=[1, 1, 1], guidance_scale=1.0, is_amplify_first_chunk=True,
        height=64, width=128, num_frames=33,
    )  # fmt: skip
    assert_uint8_matches(read_png_folder(workdir / "i2v"), reference)
