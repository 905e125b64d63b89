"""--offload group / auto and --quantize on the tiny models: frames, recorded plans, and refusals."""

import importlib.util
import json

import numpy as np
import pytest
import torch
from parity import read_png_folder

from vidgen.core.errors import OUT_OF_MEMORY, VidgenError
from vidgen.core.request import Request, Runtime
from vidgen.families import registry
from vidgen.families.cogvideox.info import read_cogvideox_info
from vidgen.models import CogVideoXTransformer3DModel, HeliosTransformer3DModel
from vidgen.runtime.memory import auto, quantize
from vidgen.runtime.memory.plan import device_peak
from vidgen.runtime.memory.sizes import folder_parts
from vidgen.runtime.memory.work import read_footprint, stage_work
from vidgen.validate.common import Options
from vidgen.validate.runtime import build_runtime
from vidgen.weights.presets import load_presets

COMMON = ("--seed", "3", "--steps", "2", "--format", "png", "--json")
# fp8-storage against bf16 on the tiny CogVideoX, 9 frames of 64x96, seeds 1-4 and 3: measured mean
# 1.34-1.45 uint8 levels, 99th percentile 8-9 (e4m3 keeps 3 mantissa bits; a few pixels move by up to
# ~80, so the bound is on the mean and the 99th percentile). A wrong cast moves most pixels far more.
FP8_STORAGE_MEAN_LEVELS = 2.5
FP8_STORAGE_P99_LEVELS = 16


def generate(vidgen, output, *options, command=("t2v", "--model", "tiny-cogvideox", "a cat walks")):
    run = vidgen(*command, *COMMON, "-o", output, *options)
    assert run.exit_code == 0, (run.stderr, run.exception)
    return json.loads(run.stdout), read_png_folder(output)


@pytest.mark.parametrize("quantize", ["none", "fp8-storage"])
def test_group_offload_frames_equal_resident_frames_exactly(vidgen, workdir, quantize):
    resident, frames = generate(vidgen, workdir / "none", "--offload", "none", "--quantize", quantize)
    grouped, grouped_frames = generate(
        vidgen, workdir / "group", "--offload", "group", "--quantize", quantize
    )
    assert (resident["runtime"]["offload"], grouped["runtime"]["offload"]) == ("none", "group")
    assert np.array_equal(frames, grouped_frames)


def test_helios_stream_with_group_offload_equals_resident_frames(vidgen, workdir):
    stream = ("stream", "--model", "tiny-helios", "a cat walks", "--frames", "66")
    _, frames = generate(vidgen, workdir / "none", "--offload", "none", command=stream)
    summary, grouped = generate(vidgen, workdir / "group", "--offload", "group", command=stream)
    assert summary["runtime"]["offload"] == "group" and len(frames) == 65
    assert np.array_equal(frames, grouped)


def test_auto_offload_on_the_cpu_records_the_plan_it_chose_never_auto(vidgen, workdir):
    summary, _ = generate(vidgen, workdir / "auto")
    assert summary["runtime"]["offload"] == "none"
    assert summary["runtime"]["plan"] == auto.CPU_PLAN
    assert "--offload=none" in summary["command"]


def test_fp8_storage_stores_the_block_layers_in_one_byte_and_stays_close_to_bf16(vidgen, workdir):
    plain, frames = generate(vidgen, workdir / "bf16", "--dtype", "bf16")
    stored, fp8_frames = generate(vidgen, workdir / "fp8", "--dtype", "bf16", "--quantize", "fp8-storage")
    assert (plain["runtime"]["quantize"], stored["runtime"]["quantize"]) == ("none", "fp8-storage")
    # The cast layers go from 2 bytes to 1 a weight; the kept ones (embeddings, norms, projections)
    # are a large share of a tiny model, so compare against what the cast layers weigh.
    model = CogVideoXTransformer3DModel.from_pretrained(
        registry.ensure_tiny("cogvideox", "t2v"), subfolder="transformer", dtype=torch.bfloat16
    )
    quantize.quantize(model, "fp8-storage", torch.bfloat16)
    cast = sum(p.numel() for p in model.parameters() if p.dtype == quantize.FP8_STORAGE_DTYPE)
    assert cast > 0
    assert plain["runtime"]["transformer_bytes"] - stored["runtime"]["transformer_bytes"] == cast
    difference = np.abs(frames.astype(int) - fp8_frames.astype(int))
    assert 0 < difference.mean() <= FP8_STORAGE_MEAN_LEVELS
    assert np.percentile(difference, 99) <= FP8_STORAGE_P99_LEVELS


@pytest.mark.parametrize("mode", ["fp8-storage", "int8"])
@pytest.mark.parametrize(
    "cls, at_most", [(CogVideoXTransformer3DModel, 0.62), (HeliosTransformer3DModel, 0.51)]
)
def test_fp8_storage_and_int8_about_halve_the_released_transformers(cls, at_most, mode):
    # At the released sizes (2b's config, Helios' 14B) on the meta device: what is left above one half
    # is the modules kept in the compute dtype (CogVideoX's adaptive-norm modulation layers the most)
    # and, for int8, a float32 scale and an int8 zero point per weight row (int8: 0.617 and 0.510).
    with torch.device("meta"):
        model = cls().to(torch.bfloat16)
    before = quantize.weight_bytes(model)
    quantize.quantize(model, mode, torch.bfloat16)
    assert 0.5 < quantize.weight_bytes(model) / before <= at_most


@pytest.mark.parametrize(
    "options, words, torchao",
    [
        (("--quantize", "int8"), ["--quantize int8 needs torchao", 'pip install "vidgen[fast]"'], False),
        (("--quantize", "fp8"), ["--quantize fp8 needs torchao"], False),
        (("--quantize", "fp8-storage", "--offload", "bogus"), ["'bogus' is not one of"], True),
    ],
)
def test_a_quantize_mode_that_cannot_run_is_a_one_line_error_before_loading(
    vidgen, workdir, monkeypatch, options, words, torchao
):
    # torchao is in the test extra; a machine without it is stood for by hiding it from the check.
    if not torchao:
        hidden = _without_torchao(importlib.util.find_spec)
        monkeypatch.setattr(quantize.importlib.util, "find_spec", hidden)
    run = vidgen("t2v", "--model", "tiny-cogvideox", "a cat", "-o", "x.mp4", *options)
    assert run.exit_code == 2
    for word in words:
        assert word in run.stderr
    assert "Traceback" not in run.stderr and not (workdir / "x.mp4").exists()


def _without_torchao(find_spec):
    return lambda name, *args: None if name == "torchao" else find_spec(name, *args)


def test_fp8_on_the_cpu_with_torchao_installed_is_one_line_that_names_the_modes_that_run(vidgen, workdir):
    run = vidgen("t2v", "--model", "tiny-cogvideox", "a cat", "-o", "x.mp4", "--quantize", "fp8")
    assert run.exit_code == 2 and len(run.stderr_lines) == 1, run.stderr
    line = run.stderr_lines[0]
    assert "--quantize fp8 needs a CUDA GPU with fp8 matmuls (compute capability 8.9 or newer)" in line
    assert "which cpu is not" in line and "--quantize int8" in line and "fp8-storage" in line
    assert not (workdir / "x.mp4").exists()


def test_torchao_modes_cannot_stream_through_offload_hooks():
    preset = load_presets()["tiny-cogvideox"]
    with pytest.raises(VidgenError, match="cannot be combined with --offload group"):
        build_runtime(Options("t2v", "tiny-cogvideox", quantize="int8", offload="group"), preset, "cpu", [])


def test_preset_keys_set_offload_and_quantize_unless_the_options_do():
    preset = load_presets()["tiny-cogvideox"]
    from dataclasses import replace

    grouped = replace(preset, offload="group", quantize="fp8-storage")
    runtime = build_runtime(Options("t2v", "tiny-cogvideox"), grouped, "cpu", [])
    assert (runtime.offload, runtime.quantize) == ("group", "fp8-storage")
    runtime = build_runtime(
        Options("t2v", "tiny-cogvideox", offload="model", quantize="none"), grouped, "cpu", []
    )
    assert (runtime.offload, runtime.quantize) == ("model", "none")
    assert build_runtime(Options("t2v", "tiny-cogvideox"), preset, "cpu", []).offload == "auto"


def test_auto_on_a_gpu_plans_from_the_folders_headers_and_the_free_memory(monkeypatch):
    # No GPU here: the device's free memory is the planner's input, so a "cuda" runtime is planned with
    # stated amounts free, derived from the tiny folder's own header sizes.
    folder = registry.ensure_tiny("cogvideox", "t2v")
    info = read_cogvideox_info(folder)
    runtime = Runtime(device="cuda", offload="auto", vae_tiling=None)
    request = Request(mode="t2v", prompt="a cat", height=480, width=720, frames=49)
    parts = folder_parts(folder, torch.float32, torch.float32)
    work = stage_work(info, read_footprint(folder), 480, 720, 49, True, 4)
    monkeypatch.setattr(auto, "free_host", lambda: int(1e12))

    def settle_with(free: int) -> Runtime:
        monkeypatch.setattr(auto, "free_device", lambda device: free)
        return auto.settle(runtime, folder, request, info)

    roomy = settle_with(int(100e9))
    assert (roomy.offload, roomy.vae_tiling) == ("none", False)
    assert roomy.plan == "100.0 GB free, transformer 0.0 GB: everything resident"
    tiled = settle_with(device_peak("none", "none", parts, work, tiled=True))
    assert (tiled.offload, tiled.vae_tiling) == ("none", True)
    with pytest.raises(VidgenError, match="does not fit") as caught:
        settle_with(device_peak("sequential", "none", parts, work, tiled=True) - 1)
    assert caught.value.exit_code == OUT_OF_MEMORY


def test_quantized_weight_bytes_count_the_fp8_storage():
    layer = torch.nn.Linear(64, 64).to(torch.bfloat16)
    before = quantize.weight_bytes(layer)
    quantize.quantize(layer, "fp8-storage", torch.bfloat16)
    assert layer.weight.dtype == torch.float8_e4m3fn
    assert quantize.weight_bytes(layer) * 2 == before


@pytest.mark.parametrize("free_gb, tiled", [(100, False), (0.001, True)])
def test_auto_on_the_cpu_tiles_the_decode_only_when_the_free_ram_needs_it(monkeypatch, free_gb, tiled):
    folder = registry.ensure_tiny("cogvideox", "t2v")
    monkeypatch.setattr(auto, "free_host", lambda: int(free_gb * 1e9))
    request = Request(mode="t2v", prompt="a cat", height=480, width=720, frames=49)
    settled = auto.settle(
        Runtime(offload="auto", vae_tiling=None), folder, request, read_cogvideox_info(folder)
    )
    assert (settled.offload, settled.vae_tiling, settled.plan) == ("none", tiled, auto.CPU_PLAN)
