"""Wan 2.1 image-to-video and first-last-frame on the tiny folders: vidgen's pipeline against diffusers'
WanImageToVideoPipeline seed for seed, the one-line errors before loading, and `vidgen i2v` / `vidgen
batch` on the tiny-wan-i2v preset."""

import json
import shutil

import diffusers
import imageio.v3 as iio
import numpy as np
import pytest
from PIL import Image
from wan_parity import (
    assert_within_one_level,
    diffusers_frames,
    diffusers_reference,
    forbid_loading,
    loaded_wan,
    request,
    tiny_wan,
    vidgen_frames,
    with_diffusers_transformers,
)

from vidgen.core.errors import VidgenError
from vidgen.core.request import Request, Runtime
from vidgen.families import registry
from vidgen.families.wan import image as wan_image
from vidgen.families.wan import pipeline as wan
from vidgen.weights.model_check import check_model

_pixels = np.random.default_rng(0)
# Not the video's 48x32 nor its aspect: both resize them (the VAE's input to 48x32, CLIP's to 32x32).
FIRST = _pixels.integers(0, 256, (40, 56, 3), dtype=np.uint8)
LAST = _pixels.integers(0, 256, (40, 56, 3), dtype=np.uint8)

# Guided (5.0 > 1), a negative prompt, 3 UniPC steps, 9 frames (3 latent frames).
REQUEST = request(mode="i2v", image=FIRST)

folder = tiny_wan("i2v")
flf2v = tiny_wan("flf2v")


reference = diffusers_reference(diffusers.WanImageToVideoPipeline, REQUEST)
model = loaded_wan()


def test_the_tiny_folder_is_an_i2v_pipeline_with_a_clip_image_encoder_in_safetensors(folder):
    index = json.loads((folder / "model_index.json").read_text())
    assert index["_class_name"] == "WanImageToVideoPipeline"
    assert index["image_encoder"] == ["transformers", "CLIPVisionModel"]
    assert index["image_processor"] == ["transformers", "CLIPImageProcessor"]
    assert (folder / "image_encoder" / "model.safetensors").is_file()
    transformer = json.loads((folder / "transformer" / "config.json").read_text())
    assert (transformer["in_channels"], transformer["out_channels"]) == (36, 16)  # noise, mask, image
    assert registry.detect(folder).name == "wan"
    info = registry.read_info(folder)
    assert (info.architecture, info.modes, info.last_image) == ("wan2.1-i2v", ("i2v",), "never")
    assert registry.read_info(registry.ensure_tiny("wan", "flf2v")).last_image == "required"
    check_model(folder, "rebuild it", registry.WEIGHTS.classes_for(folder))  # the image encoder is checked


def test_an_i2v_folder_with_only_pickled_image_encoder_weights_is_refused(folder, tmp_path):
    copy = shutil.copytree(folder, tmp_path / "copy")
    (copy / "image_encoder" / "model.safetensors").rename(copy / "image_encoder" / "pytorch_model.bin")
    with pytest.raises(VidgenError, match="holds only pickled weights"):
        check_model(copy, "download it again", registry.WEIGHTS.classes_for(copy))


def test_with_diffusers_transformer_the_frames_equal_wan_i2v_pipeline_bit_for_bit(model, folder, reference):
    swapped = with_diffusers_transformers(model, folder)
    np.testing.assert_array_equal(vidgen_frames(swapped, REQUEST), reference)


def test_with_vidgens_transformer_the_frames_are_within_one_level_of_wan_i2v_pipeline(model, reference):
    assert_within_one_level(vidgen_frames(model, REQUEST), reference, (9, 32, 48, 3))


def test_first_last_frame_matches_diffusers_last_image(flf2v):
    request = Request(**{**REQUEST, "last_image": LAST})
    frames = wan.generate(wan.load(flf2v, Runtime()), request, Runtime()).frames
    expected = diffusers_frames(diffusers.WanImageToVideoPipeline, flf2v, request)
    assert_within_one_level(frames, expected, (9, 32, 48, 3))


def test_the_given_frames_mask_marks_the_first_and_last_frame_in_their_latent_frames():
    # 9 frames: latent frame 0 holds frame 0 (repeated 4 times), 1 holds frames 1-4, 2 holds frames 5-8.
    first = wan_image.given_mask(9, 4, last=False)
    both = wan_image.given_mask(9, 4, last=True)
    assert first.tolist() == [[1, 0, 0]] * 4
    assert both.tolist() == [[1, 0, 0]] * 3 + [[1, 0, 1]]


def test_the_stages_are_text_encode_denoise_decode(model):
    class Recorder:
        def __init__(self):
            self.stages = []

        def start_stage(self, name, total=None):
            self.stages.append(name)

        def advance(self, n=1):
            pass

        def end_stage(self):
            pass

    recorder = Recorder()
    result = wan.generate(model, Request(**{**REQUEST, "steps": 1}), Runtime(), recorder)
    assert recorder.stages == ["text", "encode", "denoise", "decode"]
    assert set(result.timings) == {"text", "encode", "denoise", "decode"}


@pytest.fixture
def never_load(monkeypatch):
    forbid_loading(monkeypatch)


@pytest.fixture
def pictures(offline_workdir):
    Image.fromarray(FIRST).save(offline_workdir / "first.png")
    Image.fromarray(LAST).save(offline_workdir / "last.png")
    return offline_workdir


def one_line_error(run) -> str:
    assert run.exit_code == 2, (run.stderr, run.exception)
    assert "Traceback" not in run.stderr
    errors = [line for line in run.stderr.splitlines() if line.startswith("error")]
    assert len(errors) == 1, run.stderr
    return run.stderr


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (("--model", "tiny-wan-i2v"), "--image is missing"),
        (("--model", "tiny-wan", "--image", "first.png"), "'tiny-wan' cannot do image-to-video"),
        (("--model", "tiny-wan-i2v", "--image", "first.png", "--frames", "10"), "--frames 10 is not of the"),
        (("--model", "tiny-wan-i2v", "--image", "first.png", "--height", "40"), "--height 40 is not a mult"),
        (("--model", "tiny-wan-i2v", "--image", "nowhere.png"), "nowhere.png"),
        (
            ("--model", "tiny-wan-i2v", "--image", "first.png", "--last-image", "last.png"),
            "'tiny-wan-i2v' cannot take --last-image",
        ),
        (
            ("--model", "tiny-cogvideox-i2v", "--image", "first.png", "--last-image", "last.png"),
            "'tiny-cogvideox-i2v' cannot take --last-image",
        ),
    ],
)
def test_i2v_mistakes_are_one_line_errors_before_loading(arguments, message, vidgen, pictures, never_load):
    run = vidgen("i2v", *arguments, "--prompt", "a cat", "-o", "cat.mp4")
    assert message in one_line_error(run)
    assert not (pictures / "cat.mp4").exists()


def test_a_first_last_frame_model_without_last_image_and_a_missing_last_image_file_are_errors(
    vidgen, pictures, never_load, flf2v
):
    run = vidgen("i2v", "--model", str(flf2v), "--image", "first.png", "--prompt", "a cat", "-o", "cat.mp4")
    assert "--last-image is missing" in one_line_error(run)
    run = vidgen("i2v", "--model", str(flf2v), "--image", "first.png", "--last-image", "gone.png", "-p", "a")
    assert "gone.png" in one_line_error(run)


def test_vidgen_i2v_with_tiny_wan_i2v_writes_the_video(vidgen, pictures):
    run = vidgen("i2v", "--model", "tiny-wan-i2v", "--image", "first.png", "-p", "a cat", "-o", "cat.mp4")
    assert run.exit_code == 0, (run.stderr, run.exception)
    frames = np.stack(list(iio.imiter(pictures / "cat.mp4")))
    assert frames.shape == (9, 32, 48, 3)
    sidecar = json.loads((pictures / "cat.mp4.json").read_text())
    assert sidecar["model"]["preset"] == "tiny-wan-i2v"
    assert sidecar["settings"]["image"] == "first.png"


def test_vidgen_i2v_with_last_image_records_it_and_the_command_replays_it(vidgen, pictures, flf2v):
    size = ("--height", "32", "--width", "48", "--frames", "9", "--steps", "1")
    images = ("--image", "first.png", "--last-image", "last.png")
    run = vidgen("i2v", "--model", str(flf2v), *images, *size, "-p", "a cat", "-o", "cat.mp4")
    assert run.exit_code == 0, (run.stderr, run.exception)
    sidecar = json.loads((pictures / "cat.mp4.json").read_text())
    assert sidecar["settings"]["last_image"] == "last.png"
    assert "--last-image=last.png" in sidecar["command"]


def test_vidgen_batch_runs_wan_i2v_jobs_each_with_its_image(vidgen, pictures, monkeypatch):
    seen = []
    real = wan.generate

    def recorded(model, request, runtime, progress, text_cache=None):
        seen.append(request.image.copy())
        return real(model, request, runtime, progress, text_cache=text_cache)

    monkeypatch.setattr(wan, "generate", recorded)
    (pictures / "jobs").mkdir()
    Image.fromarray(LAST).save(pictures / "jobs" / "other.png")
    jobs = [
        {"prompt": "a cat", "image": "../first.png", "seed": 1, "name": "first"},
        {"prompt": "a dog", "image": "other.png", "seed": 2, "name": "other"},
    ]
    (pictures / "jobs" / "jobs.jsonl").write_text("".join(json.dumps(job) + "\n" for job in jobs))
    run = vidgen("batch", "jobs/jobs.jsonl", "-o", "out", "--model", "tiny-wan-i2v", "--steps", "1", "--json")
    assert run.exit_code == 0, (run.stderr, run.exception)
    assert json.loads(run.stdout)["ok"] == 2
    np.testing.assert_array_equal(seen[0], FIRST)
    np.testing.assert_array_equal(seen[1], LAST)
    for name in ("first", "other"):
        assert np.stack(list(iio.imiter(pictures / "out" / f"{name}.mp4"))).shape == (9, 32, 48, 3)


def test_a_batch_job_with_last_image_on_a_model_without_it_fails_alone(vidgen, pictures):
    jobs = [
        {"prompt": "a cat", "image": "first.png", "last_image": "last.png"},
        {"prompt": "a cat", "last_image": "last.png", "mode": "t2v"},
    ]
    (pictures / "jobs.jsonl").write_text("".join(json.dumps(job) + "\n" for job in jobs))
    run = vidgen("batch", "jobs.jsonl", "-o", "out", "--model", "tiny-wan-i2v", "--dry-run", "--json")
    failures = json.loads(run.stdout)["failures"]
    assert "cannot take --last-image" in failures[0]["error"]
    assert "last_image is for i2v jobs" in failures[1]["error"]


@pytest.mark.parametrize("name", ["tiny-wan", "tiny-wan-i2v"])
def test_the_tiny_wan_presets_agree_with_the_folders_built_for_them(name, tiny_folder):
    from vidgen.weights.presets import load_presets

    preset = load_presets()[name]
    info = registry.read_info(tiny_folder(*preset.tiny_variant))
    assert (info.architecture, info.modes) == (preset.architecture, preset.modes)
    assert preset.height % info.size_multiple == 0 and preset.width % info.size_multiple == 0
