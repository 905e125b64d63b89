"""`--attention`: every backend goes through diffusers' dispatcher; one that cannot run here is refused
in one line before anything loads; the choice is recorded."""

import importlib.util
import json

import pytest
import torch
from PIL import Image

import vidgen.app.run
from vidgen.core.errors import VidgenError
from vidgen.core.request import Runtime
from vidgen.families.cogvideox.model import CogVideoXTransformer3DModel
from vidgen.families.layers import DispatchedAttention
from vidgen.runtime import attention as runtime_checks
from vidgen.runtime.attention import ATTENTION_CHOICES, resolve_attention
from vidgen.runtime.levers import apply_runtime

COMMANDS = {
    "t2v": ("t2v", "--model", "tiny-cogvideox", "a cat", "-o", "out.mp4"),
    "i2v": ("i2v", "--model", "tiny-cogvideox-i2v", "a cat", "--image", "photo.png", "-o", "out.mp4"),
    "v2v": ("v2v", "--model", "tiny-cogvideox", "a cat", "--video", "clip.gif", "-o", "out.mp4"),
    "stream": ("stream", "--model", "tiny-helios", "a cat", "-o", "out.mp4"),
    "batch": ("batch", "jobs.jsonl", "--model", "tiny-cogvideox", "-o", "out"),
}


def test_cli_choices_are_the_validated_backends():
    from vidgen.cli.options import Attention

    assert tuple(choice.value for choice in Attention) == ATTENTION_CHOICES


@pytest.mark.parametrize("command", COMMANDS)
def test_a_backend_that_cannot_run_is_one_line_exit_2_before_anything_loads(
    vidgen, workdir, monkeypatch, command
):
    def no_loading(*args, **kwargs):
        raise AssertionError("a model loaded before the attention check")

    monkeypatch.setattr(vidgen_run_module(), "load", no_loading)
    (workdir / "jobs.jsonl").write_text('{"prompt": "a cat"}\n')
    frames = [Image.new("RGB", (96, 64), (10 * i, 30, 30)) for i in range(9)]
    frames[0].save(workdir / "photo.png")
    frames[0].save(workdir / "clip.gif", save_all=True, append_images=frames[1:])
    run = vidgen(*COMMANDS[command], "--device", "cpu", "--attention", "flash")
    assert run.exit_code == 2, (run.stdout, run.stderr, run.exception)
    assert len(run.stderr_lines) == 1 and "Traceback" not in run.stderr
    line = run.stderr_lines[0]
    assert "--attention flash cannot run" in line and "CUDA GPUs only, not on cpu" in line
    assert "fp16 or bf16 only, not fp32" in line
    if importlib.util.find_spec("flash_attn") is None:
        assert "flash-attn>=2.6.3 is not installed" in line and "pip install 'flash-attn>=2.6.3'" in line
    assert not (workdir / "out.mp4").exists() and not (workdir / "out").exists()


def vidgen_run_module():
    return vidgen.app.run


def fake_cuda(monkeypatch, capability, installed=()):
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    real_find_spec = importlib.util.find_spec
    packages = {"flash_attn", "flash_attn_3", "sageattention", "xformers"}

    def find_spec(name, *args):
        if name in packages:
            return object() if name in installed else None
        return real_find_spec(name, *args)

    monkeypatch.setattr(runtime_checks.importlib.util, "find_spec", find_spec)
    monkeypatch.setattr(runtime_checks.importlib.metadata, "version", lambda name: "9.9.9")


@pytest.mark.parametrize(
    ("capability", "installed", "dtype", "expected"),
    [
        ((9, 0), ("flash_attn_3", "flash_attn"), torch.bfloat16, "flash3"),
        ((8, 0), ("flash_attn_3", "flash_attn"), torch.bfloat16, "flash"),  # FA3 needs Hopper
        ((9, 0), (), torch.float16, "cudnn"),
        ((7, 5), (), torch.float16, "sdpa"),
        ((9, 0), ("flash_attn_3", "flash_attn"), torch.float32, "sdpa"),  # the kernels are half only
    ],
)
def test_auto_picks_the_fastest_backend_that_runs_here(monkeypatch, capability, installed, dtype, expected):
    fake_cuda(monkeypatch, capability, installed)
    assert resolve_attention("auto", "cuda", dtype) == expected


def test_auto_is_sdpa_on_the_cpu():
    assert resolve_attention("auto", "cpu", torch.bfloat16) == "sdpa"


def test_an_old_gpu_is_named_with_its_compute_capability(monkeypatch):
    fake_cuda(monkeypatch, (8, 6), ("flash_attn_3",))
    with pytest.raises(VidgenError, match=r"compute capability 9\.0 or newer, this one is 8\.6"):
        resolve_attention("flash3", "cuda", torch.bfloat16)


def test_an_unknown_preset_backend_is_refused():
    with pytest.raises(VidgenError, match="unknown attention backend 'fast'"):
        resolve_attention("fast", "cpu", torch.float32)


def tiny_cogvideox() -> CogVideoXTransformer3DModel:
    torch.manual_seed(0)
    return CogVideoXTransformer3DModel(
        num_attention_heads=2,
        attention_head_dim=16,
        time_embed_dim=8,
        text_embed_dim=8,
        num_layers=2,
        sample_width=8,
        sample_height=8,
        sample_frames=5,
        max_text_seq_length=4,
    ).eval()


def test_apply_runtime_sets_the_backend_on_every_attention_layer_and_the_dispatcher_runs_it():
    model = tiny_cogvideox()
    inputs = (torch.randn(1, 2, 16, 8, 8), torch.randn(1, 4, 8), torch.tensor([500]))
    with torch.no_grad():
        apply_runtime(model, Runtime(attention="sdpa"))
        layers = [m for m in model.modules() if isinstance(m, DispatchedAttention)]
        assert len(layers) == 2 and {m.backend.value for m in layers} == {"native"}
        native = model(*inputs).sample
        apply_runtime(model, Runtime(attention="flex"))
        assert {m.backend.value for m in layers} == {"flex"}
        flex = model(*inputs).sample
    # Another kernel ran (its rounding differs), computing the same attention.
    assert not torch.equal(native, flex)
    torch.testing.assert_close(flex, native, rtol=1e-4, atol=1e-5)


def test_set_attention_backend_leaves_the_process_default_alone():
    from diffusers.models.attention_dispatch import _AttentionBackendRegistry

    before = _AttentionBackendRegistry._active_backend
    model = tiny_cogvideox()
    model.set_attention_backend("flex")
    assert _AttentionBackendRegistry._active_backend == before
    model.reset_attention_backend()
    assert all(m.backend is None for m in model.modules() if isinstance(m, DispatchedAttention))


def test_the_choice_is_in_the_json_summary_and_the_sidecar(vidgen, workdir):
    run = vidgen(
        "t2v", "--model", "tiny-cogvideox", "a cat", "--seed", "1", "--steps", "1", "--frames", "9",
        "-o", "out.mp4", "--json", "--device", "cpu",
    )  # fmt: skip
    assert run.exit_code == 0, run.stderr
    summary = json.loads(run.stdout)
    assert summary["runtime"]["attention"] == "sdpa"  # auto on the CPU
    assert summary["runtime"]["compile"] is False and summary["runtime"]["cache"] == {"mode": "none"}
    assert json.loads((workdir / "out.mp4.json").read_text())["runtime"] == summary["runtime"]
    assert "--attention=sdpa" in summary["command"]


def test_a_preset_sets_the_default_backend_and_the_option_overrides_it(tmp_path):
    from dataclasses import replace

    from vidgen.validate.common import Options
    from vidgen.validate.runtime import build_runtime
    from vidgen.weights.presets import load_presets

    preset = replace(load_presets()["tiny-cogvideox"], attention="flex")
    assert build_runtime(Options(mode="t2v", model="m"), preset, "cpu", []).attention == "flex"
    options = Options(mode="t2v", model="m", attention="sdpa")
    assert build_runtime(options, preset, "cpu", []).attention == "sdpa"


def test_a_preset_file_may_name_its_attention_backend(tmp_path):
    from vidgen.weights.presets import PRESET_DIR, load_preset

    text = (PRESET_DIR / "tiny-cogvideox.toml").read_text()
    (tmp_path / "mine.toml").write_text(text + '\nattention = "flex"\n')
    assert load_preset(tmp_path / "mine.toml").attention == "flex"
    assert load_preset(PRESET_DIR / "tiny-cogvideox.toml").attention == "auto"
