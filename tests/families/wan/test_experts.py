"""Wan 2.2 A14B's two experts on the tiny `t2v-a14b` folder: vidgen's pipeline against diffusers' WanPipeline
seed for seed (the boundary rule, guidance_scale_2), one expert on the device at a time under model
offload, the memory plan's numbers, --guidance-2 and `vidgen t2v --model tiny-wan2.2`."""

import json
import shlex

import diffusers
import numpy as np
import pytest
import torch
from parity import assert_uint8_matches
from wan_parity import (
    diffusers_reference,
    forbid_loading,
    loaded_wan,
    request,
    tiny_wan,
    vidgen_frames,
    with_diffusers_transformers,
)

from vidgen.core.request import Request, Runtime
from vidgen.families import registry
from vidgen.families.wan import experts
from vidgen.families.wan import pipeline as wan
from vidgen.families.wan.tiny import A14B_BOUNDARY
from vidgen.runtime.memory.plan import GB, Parts, Work, choose_plan, device_peak, host_need
from vidgen.runtime.memory.sizes import folder_parts

# 4 UniPC steps of the tiny folder's shifted schedule: timesteps 999 and 900 (>= 875) to the high-noise
# expert, 750 and 500 to the low-noise one; guided, each expert with its own guidance.
REQUEST = request(steps=4, guidance=4.0, guidance_2=2.5)

folder = tiny_wan("t2v-a14b")


reference = diffusers_reference(diffusers.WanPipeline, REQUEST)
model = loaded_wan()


def test_the_tiny_folder_has_two_experts_past_a_boundary(folder):
    index = json.loads((folder / "model_index.json").read_text())
    assert index["_class_name"] == "WanPipeline" and index["boundary_ratio"] == A14B_BOUNDARY
    assert index["transformer_2"] == ["diffusers", "WanTransformer3DModel"]
    assert registry.detect(folder).name == "wan"
    info = registry.read_info(folder)
    assert (info.experts, info.architecture, info.size_multiple) == (2, "wan2.2-t2v-a14b", 16)


def test_steps_at_or_above_the_boundary_go_to_the_high_noise_expert():
    high, low = torch.nn.Identity(), torch.nn.Linear(1, 1)
    timesteps = torch.tensor([999, 900, 875, 874, 500])
    runs = experts.stretches(timesteps, experts.boundary_timestep(0.875, 1000), (high, low), (4.0, 3.0))
    assert [(run.transformer, run.guidance, run.timesteps.tolist()) for run in runs] == [
        (high, 4.0, [999, 900, 875]),
        (low, 3.0, [874, 500]),
    ]
    (only,) = experts.stretches(timesteps, None, (high, None), (4.0, None))
    assert only.transformer is high and only.timesteps.tolist() == timesteps.tolist()


def test_with_diffusers_transformers_the_frames_equal_wan_pipeline_bit_for_bit(folder, reference):
    model = with_diffusers_transformers(wan.load(folder, Runtime()), folder, ("transformer", "transformer_2"))
    np.testing.assert_array_equal(vidgen_frames(model, REQUEST), reference)


def test_with_vidgens_transformers_the_frames_are_within_one_level_of_wan_pipeline(model, reference):
    frames = vidgen_frames(model, REQUEST)
    assert frames.shape == (9, 32, 48, 3)
    assert_uint8_matches(frames, reference)


def test_both_experts_run_and_guidance_2_moves_the_low_noise_steps_only(model):
    calls = []
    for name in ("transformer", "transformer_2"):
        getattr(model, name).register_forward_pre_hook(lambda module, args, name=name: calls.append(name))
    frames = vidgen_frames(model, REQUEST)
    # conditional and unconditional branch per step: two steps per expert
    assert calls == ["transformer"] * 4 + ["transformer_2"] * 4
    other = vidgen_frames(model, {**REQUEST, "guidance_2": 6.0})
    assert not np.array_equal(frames, other)
    # diffusers' default: guidance_scale_2 None is guidance_scale
    same = vidgen_frames(model, {**REQUEST, "guidance_2": None})
    follows = vidgen_frames(model, {**REQUEST, "guidance_2": 4.0})
    np.testing.assert_array_equal(same, follows)


@pytest.mark.parametrize(("offload", "parked"), [("model", "meta"), ("none", "cpu")])
def test_model_offload_parks_the_high_noise_expert_before_the_low_noise_one_runs(folder, offload, parked):
    """On this CPU-only machine the device is the CPU, so parked experts go to "meta" to show the move."""
    runtime = Runtime(offload=offload)
    model = wan.load(folder, runtime)
    model.park = "meta"
    seen = []

    def where(module, args):
        seen.append((next(model.transformer.parameters()).device.type, module is model.transformer_2))

    model.transformer_2.register_forward_pre_hook(where)
    wan.generate(model, Request(**REQUEST), runtime)
    assert seen == [(parked, True)] * 4  # every low-noise call: the high-noise expert parked (or not)
    assert next(model.transformer_2.parameters()).device.type == parked  # and the low one after


def test_the_memory_plan_holds_both_experts_and_puts_one_on_the_device(folder):
    parts = folder_parts(folder, torch.float32, torch.float32, experts=2)
    assert parts.transformer_2 == parts.transformer > 0
    assert folder_parts(folder, torch.float32, torch.float32).transformer_2 == 0
    # The released A14B: two 14B experts in bf16, UMT5-XXL, the Wan VAE in fp32.
    with torch.device("meta"):
        expert = 2 * sum(p.numel() for p in diffusers.WanTransformer3DModel().parameters())
    parts = Parts(int(11.4 * GB), expert, int(0.5 * GB), 24, 40, transformer_2=expert)
    work = Work(text=int(0.1 * GB), denoise=int(3 * GB), decode=int(6 * GB), decode_tiled=int(2 * GB))
    one = Parts(int(11.4 * GB), expert, int(0.5 * GB), 24, 40)
    assert (
        device_peak("none", "none", parts, work, False)
        == device_peak("none", "none", one, work, False) + expert
    )
    assert device_peak("model", "none", parts, work, False) == device_peak("model", "none", one, work, False)
    assert device_peak("group", "none", parts, work, False) == device_peak("group", "none", one, work, False)
    assert host_need("model", "none", parts) == host_need("model", "none", one) + expert
    # 80 GB holds both experts (57 GB) with the rest; 48 GB one expert at a time; RAM holds both.
    assert choose_plan(int(80 * GB), int(128 * GB), parts, work).offload == "none"
    plan = choose_plan(int(48 * GB), int(128 * GB), parts, work)
    assert plan.offload == "model" and "two experts" in plan.reason and "one expert at a time" in plan.reason
    # Host memory for one expert only: model offload cannot hold both, so the plan streams fp8 copies.
    streamed = choose_plan(int(48 * GB), int(60 * GB), parts, work)
    assert (streamed.offload, streamed.quantize) == ("group", "fp8-storage")


def test_guidance_2_for_a_one_expert_model_is_a_one_line_error_before_loading(
    vidgen, offline_workdir, monkeypatch
):
    forbid_loading(monkeypatch)
    run = vidgen("t2v", "--model", "tiny-wan", "--prompt", "a cat", "--guidance-2", "3", "-o", "cat.mp4")
    assert run.exit_code == 2, run.stderr
    assert "--guidance-2 is for a model of two experts" in run.stderr and "drop --guidance-2" in run.stderr
    assert len(run.stderr_lines) == 1 and "Traceback" not in run.stderr
    assert not (offline_workdir / "cat.mp4").exists()


@pytest.mark.parametrize(
    ("options", "guidance", "guidance_2"),
    [((), 4.0, 3.0), (("--guidance", "6"), 6.0, 6.0), (("--guidance-2", "2"), 4.0, 2.0)],
)
def test_vidgen_t2v_with_tiny_wan2_2_records_both_guidances(
    vidgen, offline_workdir, options, guidance, guidance_2
):
    """The preset's 4 / 3; --guidance alone sets both (diffusers' guidance_scale_2 follows guidance_scale)."""
    run = vidgen(
        "t2v", "--model", "tiny-wan2.2", "--prompt", "a cat", "--seed", "3", *options, "-o", "cat.mp4", "-q"
    )
    assert run.exit_code == 0, run.stderr
    sidecar = json.loads((offline_workdir / "cat.mp4.json").read_text())
    assert (sidecar["settings"]["guidance"], sidecar["settings"]["guidance_2"]) == (guidance, guidance_2)
    assert f"--guidance-2={guidance_2}" in shlex.split(sidecar["command"])
