"""`vidgen t2v|i2v|v2v` on the tiny presets, end to end, against diffusers' pipelines on the same folder.

PNG outputs are lossless, so they are compared with diffusers' frames as uint8 `(x * 255).round()`.
vidgen's transformer equals diffusers' only to float rounding, which moves about 0.005% of pixels
across a uint8 rounding boundary (by 1): the bound tests/pipelines/test_cogvideox.py explains and
uses. Anything really wrong (noise order, scaling, the wrong settings from a preset) changes most
pixels by far more. Few frames and steps keep these runs short.
"""

import json

import imageio.v3 as iio
import numpy as np
import pytest
import torch
from parity import assert_uint8_matches, read_png_folder
from PIL import Image
from typer.testing import CliRunner

from vidgen import __version__
from vidgen.cli import app
from vidgen.families import registry
from vidgen.io.media import read_comment, read_video

SEED = 7
LONG_PROMPT = " ".join(["a red robot dances on the beach at night"] * 30)  # ~300 tokens, over 226


def diffusers_frames(pipeline_class, variant: str, **inputs) -> np.ndarray:
    pipe = pipeline_class.from_pretrained(registry.ensure_tiny("cogvideox", variant))
    pipe.set_progress_bar_config(disable=True)
    generator = torch.Generator("cpu").manual_seed(SEED)
    frames = pipe(**inputs, generator=generator, output_type="np").frames[0]
    return (frames * 255).round().astype(np.uint8)


@pytest.fixture(scope="module")
def cat_mp4(tmp_path_factory):
    """The README's command: `vidgen t2v --model tiny-cogvideox "a cat walks" -o out.mp4`."""
    folder = tmp_path_factory.mktemp("cat")
    args = ["t2v", "--model", "tiny-cogvideox", "a cat walks", "-o", str(folder / "out.mp4"), "--seed", "3"]
    return folder, CliRunner().invoke(app, args)


def test_t2v_writes_an_mp4_with_its_sidecar(cat_mp4):
    folder, result = cat_mp4
    assert result.exit_code == 0, result.stderr
    assert sorted(p.name for p in folder.iterdir()) == ["out.mp4", "out.mp4.json"]
    assert result.stdout.startswith(f"wrote {folder / 'out.mp4'} (9 frames, 96x64, 8 fps, seed 3)")
    assert iio.imread(folder / "out.mp4").shape == (9, 64, 96, 3)
    sidecar = json.loads((folder / "out.mp4.json").read_text())
    assert (sidecar["prompt"], sidecar["seed"], sidecar["vidgen"]) == ("a cat walks", 3, __version__)
    assert sidecar["model"]["preset"] == "tiny-cogvideox" and sidecar["model"]["folder"]
    assert sidecar["settings"]["frames"] == 9 and sidecar["runtime"]["dtype"] == "fp32"
    assert {"load", "text", "denoise", "decode", "write"} <= set(sidecar["timings"])
    assert sidecar["command"].startswith("vidgen t2v --model tiny-cogvideox --prompt 'a cat walks' --seed=3")
    # The MP4 carries the same summary, written before the write itself was timed.
    comment = json.loads(read_comment(folder / "out.mp4"))
    assert comment["settings"] == sidecar["settings"] and comment["command"] == sidecar["command"]


def test_progress_goes_to_stderr_one_line_per_stage(cat_mp4):
    _, result = cat_mp4
    stages = [line.split(":")[0] for line in result.stderr.splitlines() if "done in" in line]
    assert stages == ["load", "text", "denoise", "decode", "write"]
    assert "denoise: 4/4 steps" in result.stderr and "it/s" in result.stderr


def test_t2v_png_equals_diffusers_and_json_is_the_only_stdout(vidgen, workdir):
    from diffusers import CogVideoXPipeline

    (workdir / "t2v").mkdir()  # an older output, replaced whole because of --overwrite
    (workdir / "t2v" / "frame_00099.png").write_bytes(b"old")
    run = vidgen(
        "t2v", "--model", "tiny-cogvideox", "a cat walks", "--seed", str(SEED),
        "--steps", "2", "--format", "png", "-o", "t2v", "--json", "--overwrite",
    )  # fmt: skip
    assert run.exit_code == 0, run.stderr
    summary = json.loads(run.stdout)  # valid JSON, and nothing else on stdout
    assert run.stdout.count("\n") == 1 and summary["output"] == {"path": "t2v", "format": "png", "frames": 9}
    assert summary == json.loads((workdir / "t2v.json").read_text())
    reference = diffusers_frames(
        CogVideoXPipeline, "t2v", prompt="a cat walks", num_inference_steps=2, guidance_scale=6.0,
        height=64, width=96, num_frames=9,
    )  # fmt: skip
    assert reference.shape == (9, 64, 96, 3)
    assert_uint8_matches(read_png_folder(workdir / "t2v"), reference)


def test_i2v_png_equals_diffusers_with_the_prompt_from_stdin(vidgen, workdir):
    from diffusers import CogVideoXImageToVideoPipeline

    pixels = np.random.default_rng(0).integers(0, 256, (80, 120, 3), dtype=np.uint8)  # resized to 64x96
    Image.fromarray(pixels).save(workdir / "photo.png")
    run = vidgen(
        "i2v", "--model", "tiny-cogvideox-i2v", "--image", "photo.png", "-", "--seed", str(SEED),
        "--steps", "2", "--format", "png", "-o", "i2v", "--quiet",
        input="a cat turns its head\n",
    )  # fmt: skip
    assert run.exit_code == 0, run.stderr
    assert run.stderr == ""  # --quiet: no progress, no notes
    reference = diffusers_frames(
        CogVideoXImageToVideoPipeline, "i2v", image=Image.open(workdir / "photo.png"),
        prompt="a cat turns its head", num_inference_steps=2, guidance_scale=6.0,
        height=64, width=96, num_frames=9,
    )  # fmt: skip
    assert_uint8_matches(read_png_folder(workdir / "i2v"), reference)


def test_v2v_png_equals_diffusers_and_warns_of_a_long_prompt(vidgen, workdir, cat_mp4):
    from diffusers import CogVideoXVideoToVideoPipeline

    video = cat_mp4[0] / "out.mp4"
    run = vidgen(
        "v2v", "--model", "tiny-cogvideox", "--video", str(video), "--prompt", LONG_PROMPT,
        "--seed", str(SEED), "--steps", "3", "--strength", "0.7",
        "--format", "png", "-o", "v2v", "--quiet",
    )  # fmt: skip
    assert run.exit_code == 0, run.stderr
    warnings = [line for line in run.stderr_lines if line.startswith("warning: ")]
    assert len(warnings) == 1 and "dropped" in warnings[0], run.stderr
    reference = diffusers_frames(
        CogVideoXVideoToVideoPipeline, "t2v", video=[Image.fromarray(f) for f in read_video(video)],
        prompt=LONG_PROMPT, num_inference_steps=3, guidance_scale=6.0, strength=0.7, height=64, width=96,
    )  # fmt: skip
    assert reference.shape == (9, 64, 96, 3)
    assert_uint8_matches(read_png_folder(workdir / "v2v"), reference)
