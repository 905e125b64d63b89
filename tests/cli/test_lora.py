"""`--lora`: LoRAs built with PEFT for the tiny models and saved with diffusers' `save_lora_weights`, run
by vidgen (fused) and by diffusers' pipelines after `load_lora_weights` + `set_adapters` (unfused):
the same frames within one uint8 level (tests/parity.py), one LoRA and two stacked with scales.
"""

import hashlib
import json
import shlex
from pathlib import Path

import diffusers
import numpy as np
import pytest
import torch
from parity import assert_uint8_matches, read_png_folder
from peft import LoraConfig
from peft.utils import get_peft_model_state_dict
from PIL import Image
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from vidgen.families import registry
from vidgen.families.cogvideox.model import CogVideoXTransformer3DModel
from vidgen.families.helios.model import HeliosTransformer3DModel
from vidgen.runtime.lora import check_lora, fuse_loras

SEED = 7
LORA_B_GAIN = 2.0
ATTENTION_AND_FEED_FORWARD = ["to_q", "to_k", "to_v", "to_out.0", "net.0.proj", "net.2"]
# family, tiny variant, diffusers' pipeline (its LoRA loader), vidgen's transformer
MODELS = {
    "cogvideox": ("cogvideox", "t2v", diffusers.CogVideoXPipeline, CogVideoXTransformer3DModel),
    "cogvideox-i2v": (
        "cogvideox",
        "i2v",
        diffusers.CogVideoXImageToVideoPipeline,
        CogVideoXTransformer3DModel,
    ),
    "helios": ("helios", "base", diffusers.HeliosPipeline, HeliosTransformer3DModel),
}
REFERENCE_TRANSFORMERS = {
    "cogvideox": diffusers.CogVideoXTransformer3DModel,
    "helios": diffusers.HeliosTransformer3DModel,
}


def make_lora(model: str, folder, seed: int, alpha: int = 8):
    """A rank-4 LoRA on the attention and feed-forward projections of a tiny model, saved by diffusers;
    random A and B (PEFT's init leaves B at zero, which would change nothing)."""
    family, variant, pipeline, _ = MODELS[model]
    base = registry.ensure_tiny(family, variant)
    transformer = REFERENCE_TRANSFORMERS[family].from_pretrained(base, subfolder="transformer")
    torch.manual_seed(seed)
    config = LoraConfig(
        r=4, lora_alpha=alpha, init_lora_weights=False, target_modules=ATTENTION_AND_FEED_FORWARD
    )
    transformer.add_adapter(config, adapter_name="trained")
    with torch.no_grad():  # large enough that the video changes far beyond the parity bound
        for name, parameter in transformer.named_parameters():
            if "lora_B" in name:
                parameter.mul_(LORA_B_GAIN)
    layers = get_peft_model_state_dict(transformer, adapter_name="trained")
    pipeline.save_lora_weights(
        folder,
        transformer_lora_layers=layers,
        transformer_lora_adapter_metadata=transformer.peft_config["trained"].to_dict(),
    )
    return folder / "pytorch_lora_weights.safetensors"


@pytest.fixture(scope="module")
def loras(tmp_path_factory):
    """Two LoRAs per tiny model (the second with another alpha, so scaling by alpha/rank shows)."""
    root = tmp_path_factory.mktemp("loras")
    return {
        model: [
            make_lora(model, root / f"{model}-{index}", seed=index, alpha=8 - 4 * index) for index in (0, 1)
        ]
        for model in MODELS
    }


def diffusers_frames(model: str, loras: list, scales: list[float], **inputs) -> np.ndarray:
    family, variant, pipeline, _ = MODELS[model]
    pipe = pipeline.from_pretrained(registry.ensure_tiny(family, variant))
    pipe.set_progress_bar_config(disable=True)
    names = [f"adapter{index}" for index in range(len(loras))]
    for name, path in zip(names, loras, strict=True):
        pipe.load_lora_weights(path.parent, adapter_name=name)
    if names:
        pipe.set_adapters(names, scales)
    generator = torch.Generator("cpu").manual_seed(SEED)
    frames = pipe(**inputs, generator=generator, output_type="np").frames[0]
    return (frames * 255).round().astype(np.uint8)


def assert_lora_matters(model: str, reference: np.ndarray, **inputs) -> None:
    """The LoRA moves the video far beyond the parity bound: a LoRA left out would fail the test."""
    without = diffusers_frames(model, [], [], **inputs)
    assert np.abs(reference.astype(int) - without).mean() > 5


def lora_flags(loras: list, scales: list[float]) -> list[str]:
    return [word for path, scale in zip(loras, scales, strict=True) for word in ("--lora", f"{path}:{scale}")]


STACKS = {"one": ([0], [1.0]), "two-stacked": ([0, 1], [0.7, 1.3])}
COGVIDEOX_INPUTS = dict(num_inference_steps=2, guidance_scale=6.0, height=64, width=96, num_frames=9)


@pytest.mark.parametrize("stack", STACKS)
def test_t2v_with_loras_equals_diffusers_load_lora_weights(vidgen, workdir, loras, stack):
    chosen, scales = STACKS[stack]
    paths = [loras["cogvideox"][index] for index in chosen]
    run = vidgen(
        "t2v", "--model", "tiny-cogvideox", "a cat walks", "--seed", str(SEED), "--steps", "2",
        *lora_flags(paths, scales), "--format", "png", "-o", "out", "--quiet",
    )  # fmt: skip
    assert run.exit_code == 0, run.stderr
    reference = diffusers_frames("cogvideox", paths, scales, prompt="a cat walks", **COGVIDEOX_INPUTS)
    assert_lora_matters("cogvideox", reference, prompt="a cat walks", **COGVIDEOX_INPUTS)
    assert_uint8_matches(read_png_folder(workdir / "out"), reference)


@pytest.mark.parametrize("stack", STACKS)
def test_i2v_with_loras_equals_diffusers_load_lora_weights(vidgen, workdir, loras, stack):
    chosen, scales = STACKS[stack]
    paths = [loras["cogvideox-i2v"][index] for index in chosen]
    pixels = np.random.default_rng(0).integers(0, 256, (64, 96, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(workdir / "photo.png")
    run = vidgen(
        "i2v", "--model", "tiny-cogvideox-i2v", "--image", "photo.png", "a cat turns", "--seed", str(SEED),
        "--steps", "2", *lora_flags(paths, scales), "--format", "png", "-o", "out", "--quiet",
    )  # fmt: skip
    assert run.exit_code == 0, run.stderr
    inputs = dict(image=Image.open(workdir / "photo.png"), prompt="a cat turns", **COGVIDEOX_INPUTS)
    reference = diffusers_frames("cogvideox-i2v", paths, scales, **inputs)
    assert_lora_matters("cogvideox-i2v", reference, **inputs)
    assert_uint8_matches(read_png_folder(workdir / "out"), reference)


@pytest.mark.parametrize("stack", STACKS)
def test_helios_stream_with_loras_equals_diffusers_load_lora_weights(vidgen, workdir, loras, stack):
    chosen, scales = STACKS[stack]
    paths = [loras["helios"][index] for index in chosen]
    run = vidgen(
        "stream", "--model", "tiny-helios", "a cat walks", "--seed", str(SEED), "--frames", "33",
        *lora_flags(paths, scales), "--format", "png", "-o", "out", "--quiet",
    )  # fmt: skip
    assert run.exit_code == 0, run.stderr
    inputs = dict(
        prompt="a cat walks", num_inference_steps=2, guidance_scale=5.0, height=32, width=48, num_frames=33
    )
    reference = diffusers_frames("helios", paths, scales, **inputs)
    assert_lora_matters("helios", reference, **inputs)
    assert_uint8_matches(read_png_folder(workdir / "out"), reference)


@pytest.mark.parametrize("model", ["cogvideox", "helios"])
def test_fused_equals_unfused_also_into_fused_qkv(loras, model):
    family, variant, _, cls = MODELS[model]
    folder = registry.ensure_tiny(family, variant)
    notes: list[str] = []
    chosen = [
        check_lora(f"{path}:{scale}", registry.family(family), folder, notes)
        for path, scale in zip(loras[model], (0.7, 1.3), strict=True)
    ]
    assert notes == []  # every layer of these LoRAs is in the model
    unfused = cls.from_pretrained(folder, subfolder="transformer").eval()
    for index, lora in enumerate(chosen):
        folder_of, name = str(Path(lora.path).parent), Path(lora.path).name
        unfused.load_lora_adapter(folder_of, weight_name=name, prefix="transformer", adapter_name=f"a{index}")
    unfused.set_adapters(["a0", "a1"], [0.7, 1.3])
    fused = fuse_loras(cls.from_pretrained(folder, subfolder="transformer").eval(), tuple(chosen))
    fused_qkv = cls.from_pretrained(folder, subfolder="transformer").eval()
    fused_qkv.fuse_qkv_projections()
    fuse_loras(fused_qkv, tuple(chosen))
    assert not any("lora" in name for name, _ in fused.named_modules())  # PEFT's wrappers are gone
    inputs = transformer_inputs(unfused)
    with torch.no_grad():
        expected = unfused(**inputs, return_dict=False)[0]
        for model_ in (fused, fused_qkv):
            torch.testing.assert_close(model_(**inputs, return_dict=False)[0], expected, rtol=1e-4, atol=1e-5)


def transformer_inputs(model) -> dict:
    config, generator = model.config, torch.Generator().manual_seed(0)
    if isinstance(model, CogVideoXTransformer3DModel):
        return dict(
            hidden_states=torch.randn(1, 3, config.in_channels, 8, 12, generator=generator),
            encoder_hidden_states=torch.randn(
                1, config.max_text_seq_length, config.text_embed_dim, generator=generator
            ),
            timestep=torch.tensor([500]),
        )
    return dict(
        hidden_states=torch.randn(1, config.in_channels, 3, 8, 12, generator=generator),
        encoder_hidden_states=torch.randn(1, 8, config.text_dim, generator=generator),
        timestep=torch.tensor([500]),
    )


def test_keys_without_the_transformer_prefix_load_the_same(loras, tmp_path):
    path = loras["cogvideox"][0]
    with safe_open(path, "pt") as file:
        metadata = file.metadata()  # the rank and alpha diffusers saved
    state = {key.removeprefix("transformer."): value for key, value in load_file(path).items()}
    save_file(state, tmp_path / "bare.safetensors", metadata=metadata)
    folder = registry.ensure_tiny("cogvideox", "t2v")
    fused = []
    for lora_file in (path, tmp_path / "bare.safetensors"):
        lora = check_lora(str(lora_file), registry.family("cogvideox"), folder, [])
        model = CogVideoXTransformer3DModel.from_pretrained(folder, subfolder="transformer")
        fused.append(fuse_loras(model, (lora,)).state_dict())
    assert fused[0].keys() == fused[1].keys()
    assert all(torch.equal(fused[0][name], fused[1][name]) for name in fused[0])


def wan_layout(key: str) -> str:
    """diffusers' Helios key -> the original Wan trainers' layout (diffusion_model., self_attn.q, ...)."""
    key = key.removeprefix("transformer.").replace("lora_A", "lora_down").replace("lora_B", "lora_up")
    for ours, theirs in [("attn1", "self_attn"), ("attn2", "cross_attn"), ("ffn.net.0.proj", "ffn.0")]:
        key = key.replace(ours, theirs)
    for ours, theirs in [
        ("to_q", "q"),
        ("to_k", "k"),
        ("to_v", "v"),
        ("to_out.0", "o"),
        ("ffn.net.2", "ffn.2"),
    ]:
        key = key.replace(f".{ours}.", f".{theirs}.")
    return "diffusion_model." + key


def test_a_wan_layout_helios_lora_is_converted_by_diffusers_and_fuses_the_same(loras, tmp_path):
    path = loras["helios"][0]  # rank 4, alpha 8: the Wan layout carries the alpha per layer
    state = {wan_layout(key): value for key, value in load_file(path).items()}
    for key in [key for key in state if key.endswith(".lora_down.weight")]:
        state[key.replace(".lora_down.weight", ".alpha")] = torch.tensor(8.0)
    save_file(state, tmp_path / "wan.safetensors")
    folder = registry.ensure_tiny("helios", "base")
    fused = []
    for lora_file in (path, tmp_path / "wan.safetensors"):
        lora = check_lora(str(lora_file), registry.family("helios"), folder, [])
        model = HeliosTransformer3DModel.from_pretrained(folder, subfolder="transformer")
        fused.append(fuse_loras(model, (lora,)).state_dict())
    assert fused[0].keys() == fused[1].keys()
    base = HeliosTransformer3DModel.from_pretrained(folder, subfolder="transformer").state_dict()
    assert not torch.equal(fused[1]["blocks.0.attn2.to_q.weight"], base["blocks.0.attn2.to_q.weight"])
    for name in fused[0]:
        torch.testing.assert_close(fused[1][name], fused[0][name])


def test_a_batch_alternating_lora_sets_fuses_each_set_once_and_equals_separate_runs(
    vidgen, workdir, loras, monkeypatch
):
    from vidgen.runtime import levers, lora

    fused_sets, hashed = [], []
    fuse, sha256 = levers.fuse_loras, lora.sha256
    monkeypatch.setattr(
        levers, "fuse_loras", lambda model, chosen: fused_sets.append(chosen) or fuse(model, chosen)
    )
    monkeypatch.setattr(lora, "sha256", lambda path: hashed.append(path) or sha256(path))
    path = loras["cogvideox"][0]
    jobs = [
        {"name": "a", "prompt": "a cat walks", "lora": f"{path}:0.8"},
        {"name": "none", "prompt": "a cat walks"},
        {"name": "b", "prompt": "a dog runs", "lora": [f"{path}:0.8"]},
    ]
    (workdir / "jobs.jsonl").write_text("".join(json.dumps(job) + "\n" for job in jobs))
    common = ("--model", "tiny-cogvideox", "--seed", str(SEED), "--steps", "2", "--format", "png", "--quiet")
    run = vidgen("batch", "jobs.jsonl", "-o", "batch", *common)
    assert run.exit_code == 0, run.stderr
    assert [len(chosen) for chosen in fused_sets] == [0, 1]  # the jobs without, then the two with
    assert len(hashed) == 2  # the shared LoRA is read and hashed once to check the jobs, once to run them
    records = [json.loads(line) for line in (workdir / "batch" / "manifest.jsonl").read_text().splitlines()]
    done = {record["name"]: record for record in records if record["status"] == "ok"}
    assert done["a"]["settings"]["loras"][0]["scale"] == 0.8 and "loras" not in done["none"]["settings"]
    for job in jobs:
        flags = ["--lora", f"{path}:0.8"] if "lora" in job else []
        alone = vidgen("t2v", job["prompt"], *common, *flags, "-o", f"alone-{job['name']}")
        assert alone.exit_code == 0, alone.stderr
        assert np.array_equal(
            read_png_folder(workdir / "batch" / job["name"]),
            read_png_folder(workdir / f"alone-{job['name']}"),
        )


def test_the_sidecar_records_each_lora_and_its_command_makes_the_same_video(vidgen, workdir, loras):
    path = loras["cogvideox"][1]
    run = vidgen("t2v", "--model", "tiny-cogvideox", "a cat", "--steps", "2", "--lora", f"{path}:0.5",
                 "--format", "png", "-o", "first", "--quiet")  # fmt: skip
    assert run.exit_code == 0, run.stderr
    sidecar = json.loads((workdir / "first.json").read_text())
    (lora,) = sidecar["runtime"]["loras"]
    assert lora == {
        "source": str(path),
        "path": str(path),
        "scale": 0.5,
        "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
    }
    words = shlex.split(sidecar["command"])[1:]
    words[words.index("-o") + 1] = "again"
    again = vidgen(*words, "--quiet")
    assert again.exit_code == 0, again.stderr
    assert np.array_equal(read_png_folder(workdir / "again"), read_png_folder(workdir / "first"))


def bad_lora_files(workdir, loras) -> dict:
    (workdir / "notes.txt").write_text("not a LoRA")
    width = workdir / "wide.safetensors"
    save_file(
        {
            "transformer.transformer_blocks.0.attn1.to_q.lora_A.weight": torch.zeros(4, 7),
            "transformer.transformer_blocks.0.attn1.to_q.lora_B.weight": torch.zeros(32, 4),
        },
        width,
    )
    return {"missing": "nope.safetensors", "not safetensors": "notes.txt", "width": str(width)}


@pytest.mark.parametrize(
    ("case", "words"),
    [
        ("missing", "no such file or folder"),
        ("not safetensors", "is not a readable safetensors file"),
        ("other family", "matches none of this cogvideox transformer's layers"),
        ("width", "was trained for a model of another width"),
        ("scale", "is not a number"),
        ("infinite", "is not a finite number"),
    ],
)
def test_a_lora_that_cannot_apply_is_one_line_and_exit_2_before_loading(vidgen, workdir, loras, case, words):
    files = bad_lora_files(workdir, loras)
    files["other family"] = str(loras["helios"][0])
    files["scale"] = f"{loras['cogvideox'][0]}:strong"
    files["infinite"] = f"{loras['cogvideox'][0]}:inf"
    run = vidgen("t2v", "--model", "tiny-cogvideox", "a cat", "--lora", files[case], "-o", "out.mp4")
    assert run.exit_code == 2, run.stderr
    assert len(run.stderr_lines) == 1 and words in run.stderr, run.stderr
    assert not (workdir / "out.mp4").exists()


def test_a_lora_matching_only_some_layers_says_how_many(workdir, loras):
    state = load_file(loras["cogvideox"][0])
    state["transformer.transformer_blocks.9.attn1.to_q.lora_A.weight"] = torch.zeros(4, 32)
    state["transformer.transformer_blocks.9.attn1.to_q.lora_B.weight"] = torch.zeros(32, 4)
    save_file(state, workdir / "partial.safetensors")
    notes: list[str] = []
    folder = registry.ensure_tiny("cogvideox", "t2v")
    check_lora("partial.safetensors", registry.family("cogvideox"), folder, notes)
    assert len(notes) == 1 and "matches 12 of its 13 layers" in notes[0]


def test_a_scale_is_only_a_trailing_number(workdir):
    from vidgen.runtime.lora import parse_lora

    (workdir / "a:b").mkdir()
    assert parse_lora("a:b") == ("a:b", 1.0)  # an existing path keeps its colon
    assert parse_lora("dir:x/style.safetensors:0.25") == ("dir:x/style.safetensors", 0.25)
    assert parse_lora("owner/repo") == ("owner/repo", 1.0)


def test_lora_is_a_preset_key(tmp_path):
    from vidgen.weights.presets import PRESET_DIR, load_preset

    text = (PRESET_DIR / "tiny-cogvideox.toml").read_text() + 'lora = "style.safetensors:0.5"\n'
    (tmp_path / "styled.toml").write_text(text)
    assert load_preset(tmp_path / "styled.toml").lora == ("style.safetensors:0.5",)


def test_a_hub_repo_id_resolves_through_the_hub_cache_offline(vidgen, workdir, loras):
    snapshot = workdir / "hf-home" / "hub" / "models--someone--style" / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    (snapshot / "pytorch_lora_weights.safetensors").write_bytes(loras["cogvideox"][0].read_bytes())
    (snapshot.parents[1] / "refs").mkdir()
    (snapshot.parents[1] / "refs" / "main").write_text("abc123")
    run = vidgen("t2v", "--model", "tiny-cogvideox", "a cat", "--steps", "1", "--lora", "someone/style:0.5",
                 "-o", "out.mp4", "--quiet")  # fmt: skip
    assert run.exit_code == 0, run.stderr
    sidecar = json.loads((workdir / "out.mp4.json").read_text())
    (lora,) = sidecar["runtime"]["loras"]
    assert lora["source"] == "someone/style" and lora["path"].endswith(
        "abc123/pytorch_lora_weights.safetensors"
    )
    assert "--lora=someone/style:0.5" in sidecar["command"]


def test_loras_are_fused_before_quantizing(loras):
    from vidgen.core.request import Runtime
    from vidgen.runtime.levers import ready_transformer
    from vidgen.runtime.memory.quantize import FP8_STORAGE_DTYPE

    folder = registry.ensure_tiny("cogvideox", "t2v")
    lora = check_lora(str(loras["cogvideox"][0]), registry.family("cogvideox"), folder, [])
    expected = fuse_loras(
        CogVideoXTransformer3DModel.from_pretrained(folder, subfolder="transformer"), (lora,)
    )
    model = CogVideoXTransformer3DModel.from_pretrained(folder, subfolder="transformer")
    ready_transformer(model, Runtime(quantize="fp8-storage", loras=(lora,)))
    stored = model.transformer_blocks[0].attn1.to_q.weight
    assert stored.dtype == FP8_STORAGE_DTYPE
    assert torch.equal(stored, expected.transformer_blocks[0].attn1.to_q.weight.to(FP8_STORAGE_DTYPE))
