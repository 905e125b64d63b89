"""The offline tiny-model builder: deterministic folders that diffusers' own pipelines load and run."""

import json
from dataclasses import replace

import pytest
import torch
from safetensors.torch import load_file

from vidgen.families import registry
from vidgen.families.cogvideox import tiny as cogvideox_tiny
from vidgen.families.helios import tiny as helios_tiny
from vidgen.weights import tiny


def _weights(folder, component):
    name = "model.safetensors" if component == "text_encoder" else "diffusion_pytorch_model.safetensors"
    return load_file(folder / component / name)


def test_same_seed_builds_identical_weights_and_another_seed_differs(tmp_path):
    first = cogvideox_tiny.build_tiny_cogvideox(tmp_path / "a", seed=3)
    again = cogvideox_tiny.build_tiny_cogvideox(tmp_path / "b", seed=3)
    other = cogvideox_tiny.build_tiny_cogvideox(tmp_path / "c", seed=4)
    for component in ("text_encoder", "transformer", "vae"):
        a, b, c = (_weights(f, component) for f in (first, again, other))
        assert a.keys() == b.keys() == c.keys()
        assert all(torch.equal(a[k], b[k]) for k in a)
        assert any(not torch.equal(a[k], c[k]) for k in a)


def test_no_transformer_parameter_is_left_all_zero(tmp_path):
    folder = helios_tiny.build_tiny_helios(tmp_path / "h")
    weights = _weights(folder, "transformer")
    assert [k for k, v in weights.items() if not v.any()] == []


def test_model_index_names_diffusers_and_transformers_classes(tmp_path):
    folder = cogvideox_tiny.build_tiny_cogvideox(tmp_path / "i2v", variant="i2v")
    index = json.loads((folder / "model_index.json").read_text())
    assert index["_class_name"] == "CogVideoXImageToVideoPipeline"
    assert index["transformer"] == ["diffusers", "CogVideoXTransformer3DModel"]
    assert index["text_encoder"] == ["transformers", "T5EncoderModel"]
    assert index["scheduler"] == ["diffusers", "CogVideoXDPMScheduler"]
    config = json.loads((folder / "transformer" / "config.json").read_text())
    assert config["in_channels"] == 2 * config["out_channels"]


def test_tokenizer_is_t5_like_and_encodes_any_text():
    tokenizer = tiny.build_tokenizer(model_max_length=226)
    ids = tokenizer("A panda dances in Zürich — 東京!").input_ids
    assert ids[-1] == tokenizer.eos_token_id == 1
    assert tokenizer.unk_token_id not in ids  # unknown characters fall back to bytes
    assert "zürich" in tokenizer.decode(ids)
    padded = tokenizer("a cat", padding="max_length", max_length=226, truncation=True).input_ids
    assert len(padded) == 226 and padded[-1] == tokenizer.pad_token_id == 0


@pytest.mark.parametrize("variant", ["t2v", "i2v", "1.5-t2v", "1.5-i2v"])
def test_diffusers_runs_every_tiny_cogvideox_variant(tmp_path, variant):
    from diffusers import DiffusionPipeline
    from PIL import Image

    pipe = DiffusionPipeline.from_pretrained(
        cogvideox_tiny.build_tiny_cogvideox(tmp_path / variant, variant=variant)
    )
    pipe.set_progress_bar_config(disable=True)
    frames = 17 if variant.startswith("1.5") else 9
    inputs = dict(prompt="a cat walks", num_inference_steps=1, height=64, width=96, num_frames=frames)
    if variant.endswith("i2v"):
        inputs["image"] = Image.new("RGB", (96, 64), (200, 30, 30))
    video = pipe(**inputs, generator=torch.Generator().manual_seed(0), output_type="np").frames
    assert video.shape == (1, frames, 64, 96, 3)
    assert video.std() > 0.01


def test_diffusers_runs_the_tiny_helios_base_pipeline(tmp_path):
    from diffusers import DiffusionPipeline

    pipe = DiffusionPipeline.from_pretrained(helios_tiny.build_tiny_helios(tmp_path / "helios"))
    pipe.set_progress_bar_config(disable=True)
    video = pipe(
        prompt="a cat walks",
        num_inference_steps=1,
        height=32,
        width=48,
        num_frames=33,
        generator=torch.Generator().manual_seed(0),
        output_type="np",
    ).frames
    assert video.shape == (1, 33, 32, 48, 3)


def test_distilled_helios_folder_is_a_distilled_pyramid_pipeline(tmp_path):
    folder = helios_tiny.build_tiny_helios(tmp_path / "distilled", variant="distilled")
    index = json.loads((folder / "model_index.json").read_text())
    assert index["_class_name"] == "HeliosPyramidPipeline"
    assert index["is_distilled"] is True
    assert index["scheduler"] == ["diffusers", "HeliosDMDScheduler"]
    from diffusers import DiffusionPipeline

    pipe = DiffusionPipeline.from_pretrained(folder)
    assert type(pipe.scheduler).__name__ == "HeliosDMDScheduler"


def test_ensure_tiny_builds_once_and_reuses_the_cache(tmp_path, monkeypatch):
    first = registry.ensure_tiny("cogvideox", "t2v", cache_dir=tmp_path)
    stamp = (first / "model_index.json").stat().st_mtime_ns

    def must_not_build(*args, **kwargs):
        raise AssertionError("rebuilt a cached model")

    cogvideox = registry.FAMILIES["cogvideox"]
    monkeypatch.setitem(registry.FAMILIES, "cogvideox", replace(cogvideox, build_tiny=must_not_build))
    again = registry.ensure_tiny("cogvideox", "t2v", cache_dir=tmp_path)
    assert again == first and (again / "model_index.json").stat().st_mtime_ns == stamp


def test_interrupted_build_leaves_no_folder_under_the_final_name(tmp_path, monkeypatch):
    def interrupted(folder, variant, seed):
        (folder / "model_index.json").write_text("{}")
        raise KeyboardInterrupt

    cogvideox = registry.FAMILIES["cogvideox"]
    monkeypatch.setitem(registry.FAMILIES, "cogvideox", replace(cogvideox, build_tiny=interrupted))
    with pytest.raises(KeyboardInterrupt):
        registry.ensure_tiny("cogvideox", "t2v", cache_dir=tmp_path)
    assert list((tmp_path / "tiny").iterdir()) == []
