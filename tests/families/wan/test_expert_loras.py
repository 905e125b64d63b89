"""`--lora high=... / low=...` on Wan 2.2 A14B's two experts (tiny `t2v-a14b`): a LoRA in diffusers' Wan
key layout for the high-noise expert and one in the published Wan2.2-Distill-Loras layout (the original
Wan names, `diffusion_model.blocks.N.self_attn.q.lora_down`, with alphas) for the low-noise one, against
diffusers' WanPipeline after `load_lora_weights` (the second with `load_into_transformer_2`); a plain
--lora goes into both; `vidgen batch` loads each expert once and reloads only the one whose LoRAs change.
"""

import json

import diffusers
import numpy as np
import pytest
import torch
from parity import assert_uint8_matches
from safetensors.torch import save_file
from wan_parity import diffusers_pipeline, request, run_diffusers, tiny_wan, vidgen_frames

from vidgen.core.request import Runtime
from vidgen.families import registry
from vidgen.families.wan import pipeline as wan
from vidgen.runtime.lora import check_lora
from vidgen.weights import loading

# 4 steps: two per expert.
REQUEST = request(prompt="a cat", seed=5, steps=4, guidance=4.0, guidance_2=3.0, frames=5)
INNER, FFN, RANK, BLOCKS = 24, 32, 4, 2  # the tiny transformer's widths


def matrices(generator: torch.Generator, features_in: int, features_out: int) -> tuple[torch.Tensor, ...]:
    """A LoRA's (down [rank, in], up [out, rank]) pair, large enough to change the video."""
    down = torch.randn(RANK, features_in, generator=generator) * 0.5
    return down, torch.randn(features_out, RANK, generator=generator) * 0.5


def diffusers_layout(path, seed: int) -> None:
    """What diffusers' save_lora_weights writes for a Wan transformer."""
    generator, tensors = torch.Generator().manual_seed(seed), {}
    for block in range(BLOCKS):
        for module, (fin, fout) in {"attn1.to_q": (INNER, INNER), "attn2.to_v": (INNER, INNER)}.items():
            down, up = matrices(generator, fin, fout)
            tensors[f"transformer.blocks.{block}.{module}.lora_A.weight"] = down
            tensors[f"transformer.blocks.{block}.{module}.lora_B.weight"] = up
        down, up = matrices(generator, INNER, FFN)
        tensors[f"transformer.blocks.{block}.ffn.net.0.proj.lora_A.weight"] = down
        tensors[f"transformer.blocks.{block}.ffn.net.0.proj.lora_B.weight"] = up
    save_file(tensors, path)


def published_layout(path, seed: int) -> None:
    """The layout of lightx2v's Wan2.2-Distill-Loras: the original Wan module names, lora_down / lora_up
    with an alpha each, and the norms' `diff` tensors (which diffusers' converter drops)."""
    generator, tensors = torch.Generator().manual_seed(seed), {}
    modules = {"self_attn.k": (INNER, INNER), "cross_attn.o": (INNER, INNER), "ffn.2": (FFN, INNER)}
    for block in range(BLOCKS):
        prefix = f"diffusion_model.blocks.{block}"
        for module, (fin, fout) in modules.items():
            down, up = matrices(generator, fin, fout)
            tensors[f"{prefix}.{module}.lora_down.weight"] = down
            tensors[f"{prefix}.{module}.lora_up.weight"] = up
            tensors[f"{prefix}.{module}.alpha"] = torch.tensor(float(2 * RANK))
        tensors[f"{prefix}.norm3.diff"] = torch.zeros(INNER)
        tensors[f"{prefix}.norm3.diff_b"] = torch.zeros(INNER)
    save_file(tensors, path)


folder = tiny_wan("t2v-a14b")


@pytest.fixture(scope="module")
def loras(tmp_path_factory):
    where = tmp_path_factory.mktemp("loras")
    diffusers_layout(where / "high.safetensors", seed=1)
    published_layout(where / "low.safetensors", seed=2)
    return where


def checked(text: str, folder, notes: list | None = None, experts: int = 2):
    return check_lora(text, registry.family("wan"), folder, [] if notes is None else notes, experts=experts)


def test_high_and_low_loras_match_wan_pipeline_loading_each_into_its_expert(folder, loras):
    pipe = diffusers_pipeline(diffusers.WanPipeline, folder)
    pipe.load_lora_weights(str(loras), weight_name="high.safetensors")
    pipe.load_lora_weights(str(loras), weight_name="low.safetensors", load_into_transformer_2=True)
    reference = run_diffusers(pipe, REQUEST)
    high = checked(f"high={loras / 'high.safetensors'}", folder)
    low = checked(f"low={loras / 'low.safetensors'}", folder)
    assert (high.expert, low.expert) == ("high", "low")
    runtime = Runtime(loras=(high, low))
    model = wan.load(folder, runtime)
    assert model.transformer.vidgen_loras == (high,) and model.transformer_2.vidgen_loras == (low,)
    frames = vidgen_frames(model, REQUEST, runtime)
    assert_uint8_matches(frames, reference)
    plain = vidgen_frames(folder, REQUEST)
    assert np.abs(frames.astype(int) - plain.astype(int)).max() > 10  # the LoRAs changed the video


def test_a_plain_lora_goes_into_both_experts_and_says_so(folder, loras):
    notes = []
    lora = checked(f"{loras / 'high.safetensors'}:0.5", folder, notes)
    assert (lora.expert, lora.scale) == ("", 0.5)
    assert any("goes into both experts" in note for note in notes)
    model = wan.load(folder, Runtime(loras=(lora,)))
    assert model.transformer.vidgen_loras == model.transformer_2.vidgen_loras == (lora,)
    base = wan.load(folder, Runtime())
    for part in ("transformer", "transformer_2"):
        fused = getattr(model, part).state_dict()
        assert any(
            not torch.equal(fused[key], value) for key, value in getattr(base, part).state_dict().items()
        )


def test_an_expert_lora_on_a_one_expert_model_is_a_one_line_error(vidgen, offline_workdir, loras):
    lora = f"high={loras / 'high.safetensors'}"
    run = vidgen("t2v", "--model", "tiny-wan", "--prompt", "a cat", "--lora", lora, "-o", "cat.mp4")
    assert run.exit_code == 2, run.stderr
    assert "names the high-noise expert, but this model has one transformer" in run.stderr
    assert f"--lora {loras / 'high.safetensors'}" in run.stderr
    assert len(run.stderr_lines) == 1 and not (offline_workdir / "cat.mp4").exists()


def test_the_sidecar_records_which_expert_took_each_lora(vidgen, offline_workdir, loras):
    high, low = f"high={loras / 'high.safetensors'}:0.8", f"low={loras / 'low.safetensors'}"
    run = vidgen(
        "t2v", "--model", "tiny-wan2.2", "-p", "a cat", "--lora", high, "--lora", low, "-o", "c.mp4", "-q"
    )
    assert run.exit_code == 0, run.stderr
    sidecar = json.loads((offline_workdir / "c.mp4.json").read_text())
    recorded = [(lora["expert"], lora["scale"]) for lora in sidecar["runtime"]["loras"]]
    assert recorded == [("high", 0.8), ("low", 1.0)]
    assert f"--lora=high={loras / 'high.safetensors'}:0.8" in sidecar["command"]


def test_batch_loads_each_expert_once_and_reloads_only_the_one_whose_loras_change(
    vidgen, offline_workdir, loras, monkeypatch
):
    loaded = []
    original = loading.load_diffusers_model

    def counted(cls, folder, subfolder, dtype):
        loaded.append(subfolder)
        return original(cls, folder, subfolder, dtype)

    monkeypatch.setattr(loading, "load_diffusers_model", counted)
    high = f"high={loras / 'high.safetensors'}"
    jobs = offline_workdir / "jobs.jsonl"
    lines = [{"prompt": "a cat"}, {"prompt": "a dog", "guidance_2": 2.0}, {"prompt": "a fish", "lora": high}]
    jobs.write_text("".join(json.dumps(line) + "\n" for line in lines))
    run = vidgen("batch", str(jobs), "--model", "tiny-wan2.2", "-o", "out", "--seed", "1", "--json")
    assert run.exit_code == 0, run.stderr
    assert json.loads(run.stdout)["ok"] == 3
    assert sorted(loaded) == ["transformer", "transformer", "transformer_2", "vae"]
    dog = json.loads((offline_workdir / "out" / "00002.mp4.json").read_text())
    assert dog["settings"]["guidance_2"] == 2.0
