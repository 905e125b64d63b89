"""Every runtime lever on Wan 2.1 text-to-video, on the tiny folder: attention backends, the step
caches (their skips counted by the blocks' own calls), quantizing, offloading, VAE tiling (against
diffusers' tiled WanPipeline) and `vidgen batch` loading the model once. `--compile` is in
test_wan_compile.py, `--lora` in test_distill_loras.py, `--parallel` in test_parallel.py."""

import json
from dataclasses import replace
from pathlib import Path

import diffusers
import numpy as np
import pytest
import torch
from parity import assert_uint8_matches, read_png_folder, to_uint8
from wan_parity import request, tiny_wan

from vidgen.core.request import Request, Runtime
from vidgen.families.layers import DispatchedAttention
from vidgen.families.wan import pipeline as wan
from vidgen.runtime.attention import ATTENTION_BACKENDS, attention_problems
from vidgen.runtime.levers import take_skip_count
from vidgen.runtime.memory.quantize import FP8_STORAGE_DTYPE, weight_bytes

# Guided: each step calls the transformer twice (conditional, then unconditional), each with its own
# step-cache state.
REQUEST = Request(**request(seed=3, steps=6))
CALLS = 2 * REQUEST.steps
LOOSE = 10.0  # a threshold every step after the first passes: skipping is certain on the tiny model


folder = tiny_wan("t2v")


@pytest.fixture(scope="module")
def plain(folder):
    return wan.generate(wan.load(folder, Runtime()), REQUEST, Runtime()).frames


@pytest.fixture(scope="module")
def other_seed(folder):
    """The same request with another seed: how far apart two unrelated videos of this model are."""
    return wan.generate(wan.load(folder, Runtime()), replace(REQUEST, seed=4), Runtime()).frames


def count_calls(modules) -> list[int]:
    """A counter per module, raised by every call that really runs it. (A cached block's own call
    happens on every step: the cache hook inside it decides whether its layers run.)"""
    calls = [0] * len(modules)
    for index, module in enumerate(modules):
        module.register_forward_pre_hook(
            lambda _, args, index=index: calls.__setitem__(index, calls[index] + 1)
        )
    return calls


def count_block_calls(transformer) -> list[int]:
    """Per block, the calls that ran it: its feed-forward runs exactly then."""
    return count_calls([block.ffn for block in transformer.blocks])


def generate(folder, runtime: Runtime, request: Request = REQUEST):
    """(frames, skip counts, block calls) of one video with `runtime`'s levers."""
    model = wan.load(folder, runtime)
    calls = count_block_calls(model.transformer)
    frames = wan.generate(model, request, runtime).frames
    return frames, take_skip_count(model.transformer), calls


def assert_close_to(frames: np.ndarray, plain: np.ndarray, other_seed: np.ndarray) -> None:
    """Changed, but far less than another seed changes the video: an approximation of the same one."""
    assert frames.shape == plain.shape and not np.array_equal(frames, plain)
    moved = np.abs(frames.astype(int) - plain).mean()
    assert moved < np.abs(other_seed.astype(int) - plain).mean() / 5, moved


# --- attention ---------------------------------------------------------------------------------------

CPU_BACKENDS = [n for n, b in ATTENTION_BACKENDS.items() if not attention_problems(b, "cpu", torch.float32)]
GPU_BACKENDS = [n for n in ATTENTION_BACKENDS if n not in CPU_BACKENDS]


def test_the_backends_that_run_on_the_cpu_are_sdpa_and_flex():
    assert CPU_BACKENDS == ["sdpa", "flex"]


@pytest.mark.parametrize("name", CPU_BACKENDS)
def test_each_cpu_backend_is_set_on_every_attention_layer_and_computes_the_same_video(folder, plain, name):
    runtime = Runtime(attention=name)
    model = wan.load(folder, runtime)
    layers = [m for m in model.transformer.modules() if isinstance(m, DispatchedAttention)]
    assert len(layers) == 4  # self- and cross-attention of 2 blocks
    assert {layer.backend.value for layer in layers} == {ATTENTION_BACKENDS[name].diffusers}
    frames = wan.generate(model, REQUEST, runtime).frames
    assert np.abs(frames.astype(int) - plain).max() <= 1


@pytest.mark.parametrize("name", GPU_BACKENDS)
def test_a_backend_that_cannot_run_here_is_the_one_line_error_every_family_gives(
    vidgen, offline_workdir, monkeypatch, name
):
    def never(*args, **kwargs):
        raise AssertionError("a model loaded before the attention check")

    monkeypatch.setattr(wan, "load", never)
    lines = {}
    for model in ("tiny-wan", "tiny-cogvideox"):
        run = vidgen("t2v", "-m", model, "a cat", "--device", "cpu", "--attention", name, "-o", "out.mp4")
        assert run.exit_code == 2, (run.stderr, run.exception)
        assert len(run.stderr_lines) == 1 and "Traceback" not in run.stderr
        lines[model] = run.stderr_lines[0]
    assert lines["tiny-wan"] == lines["tiny-cogvideox"]
    assert lines["tiny-wan"].startswith(f"error: --attention {name} cannot run: ")
    assert not (offline_workdir / "out.mp4").exists()


# --- step caches -------------------------------------------------------------------------------------


def test_first_block_cache_at_threshold_zero_runs_every_block_and_gives_the_uncached_frames(folder, plain):
    frames, counts, calls = generate(folder, Runtime(cache="first-block", cache_threshold=0.0))
    assert counts == {"calls": CALLS, "skipped": 0}
    assert calls == [CALLS, CALLS]
    assert np.array_equal(frames, plain)


def test_a_loose_first_block_threshold_skips_the_blocks_after_the_first(folder, plain, other_seed):
    frames, counts, calls = generate(folder, Runtime(cache="first-block", cache_threshold=LOOSE))
    # Each guidance branch computes its first step in full; afterwards only the first block runs.
    assert counts == {"calls": CALLS, "skipped": CALLS - 2}
    assert calls == [CALLS, 2]
    assert_close_to(frames, plain, other_seed)


def test_taylorseer_predicts_the_attention_of_later_steps_instead_of_computing_it(folder, plain, other_seed):
    request = replace(REQUEST, steps=10)
    model = wan.load(folder, Runtime(cache="taylorseer"))
    # Each self-attention's output projection runs only on the steps whose attention is computed.
    attention_calls = count_calls([block.attn1.to_out[0] for block in model.transformer.blocks])
    frames = wan.generate(model, request, Runtime(cache="taylorseer")).frames
    counts = take_skip_count(model.transformer)
    assert counts["calls"] == 20 and counts["skipped"] > 0
    assert attention_calls == [counts["calls"] - counts["skipped"]] * 2
    uncached = wan.generate(wan.load(folder, Runtime()), request, Runtime()).frames
    assert_close_to(frames, uncached, other_seed)


def test_mag_cache_measures_on_the_first_run_then_skips_blocks(
    folder, plain, other_seed, tmp_path, monkeypatch
):
    monkeypatch.setenv("VIDGEN_CACHE", str(tmp_path))  # an empty ratio store
    runtime = Runtime(cache="mag", cache_threshold=LOOSE)
    frames, counts, calls = generate(folder, runtime)
    assert counts["ratios"] == "measured" and counts["skipped"] == 0 and calls == [CALLS, CALLS]
    assert np.array_equal(frames, plain)
    frames, counts, calls = generate(folder, runtime)
    assert counts["ratios"] == "stored" and counts["calls"] == CALLS and counts["skipped"] > 0
    assert calls == [CALLS - counts["skipped"]] * 2  # a skipped step runs no block: the residual stands in
    assert_close_to(frames, plain, other_seed)


# --- quantize, offload, VAE tiling ---------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["int8", "fp8-storage"])
def test_quantized_weights_take_fewer_bytes_and_give_nearly_the_same_video(folder, plain, other_seed, mode):
    full = wan.load(folder, Runtime()).transformer
    runtime = Runtime(quantize=mode)
    model = wan.load(folder, runtime)
    assert weight_bytes(model.transformer) < 0.75 * weight_bytes(full)
    if mode == "fp8-storage":
        assert model.transformer.blocks[0].ffn.net[2].weight.dtype == FP8_STORAGE_DTYPE
    assert_close_to(wan.generate(model, REQUEST, runtime).frames, plain, other_seed)


@pytest.mark.parametrize("offload", ["model", "group", "sequential"])
def test_each_offload_gives_the_same_frames(folder, plain, offload):
    runtime = Runtime(offload=offload)
    assert np.array_equal(wan.generate(wan.load(folder, runtime), REQUEST, runtime).frames, plain)


def test_vae_tiling_decodes_as_diffusers_tiled_wan_pipeline_does(folder):
    # 288x288 is four of the VAE's 256-pixel tiles, overlapping: tiling changes the frames.
    request = replace(REQUEST, steps=1, height=288, width=288, frames=1)
    model = wan.load(folder, Runtime(vae_tiling=True))
    tiled = wan.generate(model, request, Runtime(vae_tiling=True)).frames
    untiled = wan.generate(model, request, Runtime(vae_tiling=False)).frames
    assert not np.array_equal(tiled, untiled)
    pipe = diffusers.WanPipeline.from_pretrained(folder)
    pipe.set_progress_bar_config(disable=True)
    pipe.vae.enable_tiling()
    reference = pipe(
        prompt=request.prompt,
        negative_prompt=request.negative_prompt,
        height=288,
        width=288,
        num_frames=1,
        num_inference_steps=1,
        guidance_scale=request.guidance,
        generator=torch.Generator("cpu").manual_seed(request.seed),
        output_type="np",
    ).frames[0]
    assert_uint8_matches(tiled, to_uint8(reference))


# --- batch -------------------------------------------------------------------------------------------


def test_a_wan_batch_loads_the_model_once_and_each_job_equals_its_own_run(
    vidgen, offline_workdir, monkeypatch
):
    loads = []
    load = wan.load
    monkeypatch.setattr(wan, "load", lambda *args, **kwargs: loads.append(1) or load(*args, **kwargs))
    jobs = [{"name": "cat", "prompt": "a cat", "seed": 1}, {"name": "dog", "prompt": "a dog", "seed": 2}]
    (offline_workdir / "jobs.jsonl").write_text("".join(json.dumps(job) + "\n" for job in jobs))
    common = ("--model", "tiny-wan", "--format", "png", "--quiet", "--device", "cpu")
    run = vidgen("batch", "jobs.jsonl", "-o", "batch", *common)
    assert run.exit_code == 0, run.stderr
    assert len(loads) == 1
    for job in jobs:
        alone = vidgen("t2v", job["prompt"], "--seed", str(job["seed"]), "-o", job["name"], *common)
        assert alone.exit_code == 0, alone.stderr
        assert np.array_equal(
            read_png_folder(offline_workdir / "batch" / job["name"]), read_png_folder(Path(job["name"]))
        )
    assert len(loads) == 3
