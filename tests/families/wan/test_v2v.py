"""Wan video-to-video on the tiny text-to-video folder (diffusers' WanVideoToVideoPipeline loads the same
WanPipeline folder): vidgen's pipeline against it seed for seed at a strength, the one-line errors, and
`vidgen v2v --model tiny-wan`."""

import json

import diffusers
import imageio.v3 as iio
import numpy as np
import pytest
from wan_parity import (
    assert_within_one_level,
    diffusers_reference,
    forbid_loading,
    loaded_wan,
    request,
    tiny_wan,
    vidgen_frames,
    with_diffusers_transformers,
)

from vidgen.families import registry

# 9 frames, not the video's 48x32 nor its aspect: the pipelines resize each frame.
VIDEO = np.random.default_rng(1).integers(0, 256, (9, 40, 56, 3), dtype=np.uint8)

# 3 UniPC steps at strength 0.7 keep the last 2; guided, with a negative prompt.
REQUEST = request(mode="v2v", video=VIDEO, strength=0.7)

folder = tiny_wan("t2v")


reference = diffusers_reference(diffusers.WanVideoToVideoPipeline, REQUEST)
model = loaded_wan()


def test_the_text_to_video_folder_also_does_video_to_video(folder):
    assert registry.read_info(folder).modes == ("t2v", "v2v")
    assert registry.family("wan").v2v_strength


def test_with_diffusers_transformer_the_frames_equal_wan_v2v_pipeline_bit_for_bit(model, folder, reference):
    swapped = with_diffusers_transformers(model, folder)
    np.testing.assert_array_equal(vidgen_frames(swapped, REQUEST), reference)


def test_with_vidgens_transformer_the_frames_are_within_one_level_of_wan_v2v_pipeline(model, reference):
    assert_within_one_level(vidgen_frames(model, REQUEST), reference, (9, 32, 48, 3))


def test_strength_decides_how_many_steps_run_and_changes_the_video(model):
    class Steps:
        def __init__(self):
            self.totals = {}

        def start_stage(self, name, total=None):
            self.totals[name] = total

        def advance(self, n=1):
            pass

        def end_stage(self):
            pass

    weak, strong = Steps(), Steps()
    low = vidgen_frames(model, {**REQUEST, "strength": 0.4}, progress=weak)
    high = vidgen_frames(model, {**REQUEST, "strength": 1.0}, progress=strong)
    assert (weak.totals["denoise"], strong.totals["denoise"]) == (1, 3)
    assert "encode" in weak.totals
    assert not np.array_equal(low, high)


@pytest.fixture
def clip(offline_workdir):
    iio.imwrite(offline_workdir / "clip.gif", VIDEO, duration=60, loop=0)
    iio.imwrite(offline_workdir / "short.gif", VIDEO[:4], duration=60, loop=0)
    return offline_workdir


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ((), "--video is missing"),
        (("--video", "clip.gif", "--strength", "0.1", "--steps", "2"), "--strength 0.1 with 2 steps"),
        (("--video", "clip.gif", "--frames", "8"), "--frames 8 is not of the form 4k+1"),
        (("--video", "short.gif", "--frames", "9"), "has 4 frames, fewer than --frames 9"),
        (("--video", "clip.gif", "--width", "50"), "--width 50 is not a multiple of 16"),
    ],
)
def test_v2v_mistakes_are_one_line_errors_before_loading(arguments, message, vidgen, clip, monkeypatch):
    forbid_loading(monkeypatch)
    run = vidgen("v2v", "--model", "tiny-wan", *arguments, "--prompt", "a cat", "-o", "cat.mp4")
    assert run.exit_code == 2, (run.stderr, run.exception)
    assert message in run.stderr and "Traceback" not in run.stderr
    assert len([line for line in run.stderr.splitlines() if line.startswith("error")]) == 1
    assert not (clip / "cat.mp4").exists()


def test_vidgen_v2v_with_tiny_wan_writes_the_video_and_records_the_strength(vidgen, clip):
    options = ("--video", "clip.gif", "--strength", "0.6")
    run = vidgen("v2v", "--model", "tiny-wan", *options, "-p", "a cat", "-o", "cat.mp4")
    assert run.exit_code == 0, (run.stderr, run.exception)
    assert np.stack(list(iio.imiter(clip / "cat.mp4"))).shape == (9, 32, 48, 3)
    sidecar = json.loads((clip / "cat.mp4.json").read_text())
    assert (sidecar["settings"]["strength"], sidecar["settings"]["video"]) == (0.6, "clip.gif")
    assert "--strength=0.6" in sidecar["command"] and "--video=clip.gif" in sidecar["command"]


def test_a_short_video_takes_its_longest_4k_plus_1_frames(vidgen, clip):
    iio.imwrite(clip / "seven.gif", VIDEO[:7], duration=60, loop=0)
    run = vidgen("v2v", "--model", "tiny-wan", "--video", "seven.gif", "-p", "a cat", "-o", "cat.mp4")
    assert run.exit_code == 0, (run.stderr, run.exception)
    assert np.stack(list(iio.imiter(clip / "cat.mp4"))).shape == (5, 32, 48, 3)
