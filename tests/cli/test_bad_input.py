"""Every user mistake ends in one line on stderr naming the fix, exit code 2, and no output file.

Checks that need no generation use the tiny presets' configs only. Failures during generation (out of
memory, Ctrl-C, a failing disk) use a stand-in pipeline, so they run without the model code.
"""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from vidgen.io.writer import VideoWriter

TINY = ("--model", "tiny-cogvideox", "--seed", "1")


def assert_refused(run, *words, code=2):
    assert run.exit_code == code, (run.stdout, run.stderr, run.exception)
    assert len(run.stderr_lines) == 1, run.stderr
    line = run.stderr_lines[0]
    assert line.startswith("error: ")
    for word in words:
        assert word in line, line
    assert "Traceback" not in run.stderr
    assert run.stdout == ""


@pytest.fixture
def inputs(workdir):
    """A readable image, an unreadable one, and a small video, made in the test's folder."""
    from PIL import Image

    Image.new("RGB", (96, 64), (200, 30, 30)).save(workdir / "photo.png")
    (workdir / "broken.png").write_bytes(b"not an image")
    (workdir / "broken.mp4").write_bytes(b"not a video")
    # Frames that differ: a GIF writer merges identical neighbours into one longer frame.
    clip = np.stack([np.full((64, 96, 3), 20 * i, np.uint8) for i in range(9)])
    with VideoWriter.open(workdir / "clip.gif", fps=8, format="gif") as writer:
        writer.write(clip)
    return workdir


def assert_nothing_written(files_in, folder, before):
    assert files_in(folder) - {"hf-home"} == before


@pytest.mark.parametrize(
    "args, words",
    [
        (("--frames", "10"), ["--frames 10", "4k+1", "--frames 9 or 17"]),
        (("--frames", "8"), ["4k+1", "--frames 1 or 9"]),
        # 4k+1, but 4 latent frames: the VAE would decode them to 16 frames, not 13.
        (("--frames", "13"), ["4 latent frames", "decodes to 16 frames", "--frames 9 or 17"]),
        (("--height", "70"), ["--height 70", "multiple of 16", "64 or 80"]),
        (("--width", "100"), ["--width 100", "multiple of 16", "96 or 112"]),
        (("-o", "out.mp4", "--format", "gif"), ["--format gif", "out.mp4"]),
        (("-o", "out.avi"), ["out.avi", "--format png"]),
        (("-o", "clip.webm", "--format", "mp4"), ["'clip.webm' is not named .mp4", "clip.mp4"]),
        (("-o", "clip", "--format", "gif"), ["'clip' is not named .gif", "clip.gif"]),
        (("--device", "tpu9"), ["device", "tpu9"]),
        (("--device", "meta"), ["cannot run on device 'meta'", "cpu, cuda"]),
        (("-o", ".", "--format", "png"), ["-o . names no output"]),
        (("-o", "..", "--format", "png"), ["-o .. names no output"]),
        (("--seed", str(2**64)), ["--seed", "too large"]),
    ],
)
def test_bad_t2v_option_is_one_line_and_writes_nothing(vidgen, files_in, workdir, args, words):
    run = vidgen("t2v", *TINY, "a cat walks", *args)
    assert_refused(run, *words)
    assert_nothing_written(files_in, workdir, set())


@pytest.mark.parametrize("prompt", [[], [""], ["   "], ["--prompt", " "]])
def test_empty_prompt_is_refused(vidgen, prompt):
    assert_refused(vidgen("t2v", *TINY, *prompt), "prompt is empty")


def test_empty_prompt_from_stdin_is_refused(vidgen):
    assert_refused(vidgen("t2v", *TINY, "-", input="\n"), "prompt is empty")


def test_two_prompts_are_refused(vidgen):
    assert_refused(vidgen("t2v", *TINY, "a cat", "--prompt", "a dog"), "two prompts")


def test_unknown_model_lists_close_preset_names(vidgen):
    run = vidgen("t2v", "--model", "cogvideox-3b", "a cat")
    assert_refused(run, "unknown model 'cogvideox-3b'", "cogvideox-5b", "vidgen models")


def test_missing_model_folder_is_refused(vidgen):
    assert_refused(vidgen("t2v", "--model", "./models/nope", "a cat"), "no model folder", "./models/nope")


def test_folder_without_model_index_is_refused(vidgen, workdir):
    (workdir / "empty-model").mkdir()
    assert_refused(vidgen("t2v", "--model", "empty-model", "a cat"), "model_index.json", "empty-model")


def test_helios_folder_without_its_configs_is_refused(vidgen, workdir):
    (workdir / "helios").mkdir()
    (workdir / "helios" / "model_index.json").write_text(json.dumps({"_class_name": "HeliosPipeline"}))
    assert_refused(vidgen("t2v", "--model", "./helios", "a cat"), "config.json' is missing")


def test_hub_model_offline_without_cache_names_the_local_folder_alternative(tmp_path):
    # A fresh process: huggingface_hub reads HF_HUB_OFFLINE when it is imported.
    (tmp_path / "empty-hf-home").mkdir()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "empty-hf-home")}
    command = [sys.executable, "-m", "vidgen", "t2v", "--model", "THUDM/CogVideoX-2b", "a cat", "--seed", "1"]
    run = subprocess.run(command, capture_output=True, text=True, env=env, cwd=tmp_path)
    assert run.returncode == 2, run.stderr
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), run.stderr
    assert "THUDM/CogVideoX-2b" in lines[0] and "HF_HUB_OFFLINE" in lines[0]
    assert "--model /path/to/folder" in lines[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty-hf-home"]


def test_image_to_a_text_only_model_is_refused(vidgen, inputs):
    run = vidgen("i2v", *TINY, "--image", "photo.png", "a cat")
    assert_refused(run, "tiny-cogvideox", "cannot do image-to-video", "tiny-cogvideox-i2v")


def test_text_to_video_on_an_image_only_model_is_refused(vidgen):
    run = vidgen("t2v", "--model", "tiny-cogvideox-i2v", "a cat")
    assert_refused(run, "cannot do text-to-video", "vidgen i2v")


@pytest.mark.parametrize(
    "image, words",
    [
        ("nothere.png", ["image 'nothere.png' does not exist"]),
        ("broken.png", ["cannot read image 'broken.png'"]),
        (".", ["is not a file"]),
        (None, ["--image is missing"]),
    ],
)
def test_missing_or_unreadable_image_is_refused(vidgen, inputs, files_in, image, words):
    before = files_in(inputs)
    args = ["--image", image] if image else []
    run = vidgen("i2v", "--model", "tiny-cogvideox-i2v", "--seed", "1", *args, "a cat")
    assert_refused(run, *words)
    assert_nothing_written(files_in, inputs, before)


@pytest.mark.parametrize(
    "video, words",
    [
        ("nothere.mp4", ["video 'nothere.mp4' does not exist"]),
        ("broken.mp4", ["cannot read video 'broken.mp4'"]),
        (None, ["--video is missing"]),
    ],
)
def test_missing_or_unreadable_video_is_refused(vidgen, inputs, files_in, video, words):
    before = files_in(inputs)
    run = vidgen("v2v", *TINY, *(["--video", video] if video else []), "a cat")
    assert_refused(run, *words)
    assert_nothing_written(files_in, inputs, before)


def test_more_frames_than_the_input_video_has_is_refused(vidgen, inputs):
    run = vidgen("v2v", *TINY, "--video", "clip.gif", "--frames", "17", "a cat")
    assert_refused(run, "9 frames", "--frames 17")


@pytest.mark.parametrize(
    "args",
    [("--height", "128"), ("--width", "128", "--height", "64"), ("--frames", "13")],
)
def test_learned_position_model_refuses_another_size(vidgen, inputs, args):
    run = vidgen("i2v", "--model", "tiny-cogvideox-i2v", "--image", "photo.png", "a cat", *args)
    assert_refused(run, "only generates 96x64 with 9 frames", "learned position")


def test_cogvideox_1_5_refuses_sizes_beyond_its_rotary_grid(vidgen):
    run = vidgen("t2v", "--model", "tiny-cogvideox1.5", "a cat", "--height", "128")
    assert_refused(run, "at most 96x64 (width x height)", "96x128 is larger")


def test_cogvideox_1_5_video_to_video_needs_whole_latent_patches(vidgen, inputs):
    # 9 frames -> 3 latent frames, which diffusers' V2V pipeline cannot split into patches of 2.
    run = vidgen("v2v", "--model", "tiny-cogvideox1.5", "--video", "clip.gif", "--frames", "9", "a cat")
    assert_refused(run, "3 latent frames", "temporal patch", "--frames 5 or 13")


def test_strength_too_small_for_the_steps_is_refused(vidgen, inputs):
    run = vidgen("v2v", *TINY, "--video", "clip.gif", "--strength", "0.1", "--steps", "4", "a cat")
    assert_refused(run, "--strength 0.1", "no denoising step")


def test_existing_output_is_not_replaced_without_overwrite(vidgen, workdir):
    (workdir / "out.mp4").write_bytes(b"precious")
    assert_refused(vidgen("t2v", *TINY, "a cat", "-o", "out.mp4"), "'out.mp4' already exists", "--overwrite")
    assert (workdir / "out.mp4").read_bytes() == b"precious"


def test_existing_sidecar_is_not_replaced_without_overwrite(vidgen, workdir):
    (workdir / "out.mp4.json").write_text("{}")
    assert_refused(vidgen("t2v", *TINY, "a cat", "-o", "out.mp4"), "out.mp4.json", "already exists")


def test_default_output_name_is_not_reused_silently(vidgen, workdir):
    (workdir / "a-cat-walks-1.mp4").write_bytes(b"earlier")
    assert_refused(vidgen("t2v", *TINY, "A cat walks!"), "a-cat-walks-1.mp4", "already exists")


@pytest.fixture
def fake_pipeline(stand_in_pipeline):
    return stand_in_pipeline


@pytest.mark.parametrize(
    "output, words",
    [
        ("missing-folder/out.mp4", ["folder 'missing-folder' does not exist"]),
        ("a-file/out.mp4", ["'a-file' is not a folder"]),
    ],
)
def test_unwritable_output_is_refused_before_the_model_loads(vidgen, workdir, fake_pipeline, output, words):
    (workdir / "a-file").write_text("")
    assert_refused(vidgen("t2v", *TINY, "a cat", "-o", output), *words)
    assert fake_pipeline.calls == []


def _raise(error):
    def fail(*args, **kwargs):
        raise error

    return fail


def test_out_of_memory_names_the_next_offload_plan_and_vae_tiling(vidgen, workdir, files_in, fake_pipeline):
    fake_pipeline.generate = _raise(torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB"))
    run = vidgen("t2v", *TINY, "a cat", "-o", "out.mp4", "--quiet", "--no-vae-tiling")
    assert_refused(run, "out of memory", "offload none", "try --offload model", "--vae-tiling", code=3)
    run = vidgen("t2v", *TINY, "a cat", "-o", "out.mp4", "--quiet", "--offload", "group")
    assert_refused(run, "offload group", "try --offload group --quantize fp8-storage", code=3)
    assert_nothing_written(files_in, workdir, {"a-file"} - {"a-file"})


def test_ctrl_c_exits_130_without_traceback_or_output(vidgen, workdir, files_in, fake_pipeline):
    fake_pipeline.generate = _raise(KeyboardInterrupt())
    run = vidgen("t2v", *TINY, "a cat", "-o", "out.mp4", "--quiet")
    assert_refused(run, "interrupted", code=130)
    assert_nothing_written(files_in, workdir, set())


@pytest.mark.parametrize(
    "error, code", [(KeyboardInterrupt(), 130), (OSError(28, "No space left on device"), 1)]
)
def test_failure_while_writing_leaves_no_partial_output(
    vidgen, workdir, files_in, fake_pipeline, monkeypatch, error, code
):
    def write_then_fail(self, frames):
        self._sink.write(frames[:2])  # some frames really reach the encoder before the failure
        raise error

    monkeypatch.setattr(VideoWriter, "write", write_then_fail)
    run = vidgen("t2v", *TINY, "a cat", "-o", "out.mp4", "--quiet")
    assert_refused(run, "interrupted" if code == 130 else "No space left", code=code)
    assert_nothing_written(files_in, workdir, set())


def test_programming_errors_stay_tracebacks(vidgen, fake_pipeline):
    fake_pipeline.generate = _raise(RuntimeError("a bug"))
    run = vidgen("t2v", *TINY, "a cat", "-o", "out.mp4", "--quiet")
    assert run.exit_code == 1
    assert isinstance(run.exception, RuntimeError)


@pytest.mark.parametrize("command", ["t2v", "stream"])
def test_overwrite_refuses_a_folder_holding_files_vidgen_did_not_write(vidgen, workdir, command):
    (workdir / "proj").mkdir()
    (workdir / "proj" / "notes.txt").write_text("mine")
    (workdir / "proj" / "frame_00000.png").write_bytes(b"an earlier frame")
    model = "tiny-helios" if command == "stream" else "tiny-cogvideox"
    run = vidgen(command, "--model", model, "a cat", "-o", "proj", "--format", "png", "--overwrite", "-q")
    assert_refused(run, "'proj' holds files vidgen did not write (notes.txt)")
    assert sorted(os.listdir(workdir / "proj")) == ["frame_00000.png", "notes.txt"]


def test_a_name_too_long_for_the_files_beside_it_is_refused_before_the_model_loads(
    vidgen, workdir, fake_pipeline
):
    run = vidgen("t2v", *TINY, "a cat", "-o", "c" * 241 + ".mp4")
    assert_refused(run, "245 bytes", "choose a shorter -o")
    assert fake_pipeline.calls == [] and os.listdir(workdir) == []


def test_a_prompt_longer_than_a_command_line_argument_is_written_with_its_metadata(
    vidgen, workdir, fake_pipeline
):
    from vidgen.io.media import read_comment

    prompt = "a cat walks on the beach " * 8000  # 200 KB: more than one argument may hold (128 KiB)
    run = vidgen("t2v", *TINY, prompt, "-o", "long.mp4", "--quiet")
    assert run.exit_code == 0, run.stderr
    assert json.loads(read_comment(workdir / "long.mp4"))["prompt"] == prompt.strip()
    assert json.loads((workdir / "long.mp4.json").read_text())["prompt"] == prompt.strip()


@pytest.mark.parametrize("signum, code", [(signal.SIGHUP, 129), (signal.SIGTERM, 143)])
def test_sighup_and_sigterm_stop_as_ctrl_c_with_128_plus_the_signal(
    vidgen, workdir, fake_pipeline, signum, code
):
    def stopped(*args, **kwargs):
        os.kill(os.getpid(), signum)  # delivered to this process's handler before kill returns
        time.sleep(30)

    fake_pipeline.generate = stopped
    run = vidgen("t2v", *TINY, "a cat", "-o", "out.mp4", "--quiet")
    assert_refused(run, "interrupted", code=code)
    assert os.listdir(workdir) == []


def test_a_cache_that_cannot_be_written_is_one_line(vidgen, workdir, monkeypatch):
    (workdir / "a-file").write_text("")
    monkeypatch.setenv("VIDGEN_CACHE", str(workdir / "a-file" / "cache"))
    run = vidgen("t2v", *TINY, "a cat")
    assert_refused(run, "cannot build the tiny model in the cache", "a-file", "VIDGEN_CACHE")


def png_header(width: int, height: int) -> bytes:
    """A PNG that declares its size and holds no pixels: enough for a reader to refuse it by size."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b""))
        + chunk(b"IEND", b"")
    )


def test_an_image_too_large_to_decode_is_one_line(vidgen, workdir):
    (workdir / "huge.png").write_bytes(png_header(30000, 30000))
    run = vidgen("i2v", "--model", "tiny-cogvideox-i2v", "--seed", "1", "--image", "huge.png", "a cat")
    assert_refused(run, "image 'huge.png' is too large", "smaller image")
