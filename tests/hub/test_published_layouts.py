"""Every preset loads from a Hugging Face cache laid out as its published repo (tiny weights, sharded,
older configs, the older T5 tokenizer set for CogVideoX), with no network: the hub never answers."""

import json

import numpy as np
import pytest
import tiny_hub
import torch
from PIL import Image

from vidgen.families import registry
from vidgen.weights import loading
from vidgen.weights.model_check import check_model
from vidgen.weights.presets import load_presets

# Tiny sizes each family's tiny model runs at (see presets/tiny-*.toml).
SIZES = {
    "cogvideox-2b": ("t2v", 64, 96, 9),
    "cogvideox-5b": ("t2v", 64, 96, 9),
    "cogvideox-5b-i2v": ("i2v", 64, 96, 9),
    "cogvideox1.5-5b": ("t2v", 64, 96, 17),
    "cogvideox1.5-5b-i2v": ("i2v", 64, 96, 17),
    "helios-base": ("t2v", 32, 48, 33),
    "helios-mid": ("t2v", 64, 128, 33),
    "helios-distilled": ("t2v", 64, 128, 33),
    "wan2.1-t2v-1.3b": ("t2v", 32, 48, 9),
    "wan2.1-t2v-14b": ("t2v", 32, 48, 9),
    "wan2.1-i2v-14b-480p": ("i2v", 32, 48, 9),
    "wan2.1-i2v-14b-720p": ("i2v", 32, 48, 9),
    "wan2.2-t2v-a14b": ("t2v", 32, 48, 9),
    "wan2.2-i2v-a14b": ("i2v", 32, 48, 9),
    "wan2.2-ti2v-5b": ("t2v", 32, 64, 9),  # the Wan2.2 VAE: 16x spatial, so sizes in 32s
    "wan2.2-ti2v-5b/i2v": ("i2v", 32, 64, 9),
}


@pytest.mark.parametrize("case", sorted(SIZES))
def test_every_preset_runs_from_its_published_layout_without_network(
    case, published_cache, hub_env, silent_hub, invoke_cli, tmp_path
):
    assert set(SIZES) >= set(tiny_hub.PUBLISHED)
    preset = case.split("/")[0]
    hub_env(published_cache)
    mode, height, width, frames = SIZES[case]
    image = []
    if mode == "i2v":
        Image.fromarray(np.full((height, width, 3), 128, np.uint8)).save(tmp_path / "in.png")
        image = ["--image", str(tmp_path / "in.png")]
    run = invoke_cli(
        mode, "--model", preset, "a cat walks", *image, "--height", str(height), "--width", str(width),
        "--frames", str(frames), "--steps", "1", "--dtype", "fp32", "--seed", "1", "-o", "out.mp4",
    )  # fmt: skip
    assert run.exit_code == 0, run.stderr
    assert (tmp_path / "out.mp4").stat().st_size > 0
    sidecar = json.loads((tmp_path / "out.mp4.json").read_text())
    assert sidecar["model"]["revision"] == tiny_hub.COMMIT
    assert silent_hub == []  # the cache answered; the hub was never asked
    guidance_2 = load_presets()[preset].guidance_2
    if guidance_2 is not None:  # both experts ran, the low-noise one at its own guidance
        assert sidecar["settings"].get("guidance_2") == guidance_2, sidecar["settings"]


def test_cogvideox_published_layout_has_the_older_tokenizer_set_and_sharded_weights(published_cache):
    snapshot = published_cache / "models--THUDM--CogVideoX1.5-5B" / "snapshots" / tiny_hub.COMMIT
    names = {path.name for path in (snapshot / "tokenizer").iterdir()}
    assert names == {"spiece.model", "added_tokens.json", "special_tokens_map.json", "tokenizer_config.json"}
    index = json.loads((snapshot / "text_encoder" / "model.safetensors.index.json").read_text())
    assert sorted(set(index["weight_map"].values()))[-1] == "model-00004-of-00004.safetensors"
    config = json.loads((snapshot / "text_encoder" / "config.json").read_text())
    assert config["torch_dtype"] == "float32" and config["dropout_rate"] == 0.1
    assert (snapshot / "transformer" / "diffusion_pytorch_model.safetensors.index.json").is_file()
    check_model(snapshot, "", registry.WEIGHTS.classes_for(snapshot))


def test_older_t5_tokenizer_set_loads_and_encodes_as_sentencepiece_does(published_cache):
    import sentencepiece

    snapshot = published_cache / "models--THUDM--CogVideoX-2b" / "snapshots" / tiny_hub.COMMIT
    tokenizer = loading.load_tokenizer(snapshot)
    pieces = sentencepiece.SentencePieceProcessor(model_file=str(snapshot / "tokenizer" / "spiece.model"))
    prompt = "a red cat walks on the beach zebra"
    assert tokenizer(prompt).input_ids == pieces.encode(prompt) + [1]  # T5 appends </s>
    assert len(tokenizer) == pieces.get_piece_size() + tiny_hub.EXTRA_IDS


def test_protobuf_is_a_dependency_because_transformers_needs_it_for_spiece_model():
    from pathlib import Path

    import google.protobuf  # noqa: F401  the installed dependency

    from vidgen.weights.presets import tomllib

    pyproject = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())
    assert any(dep.startswith("protobuf") for dep in pyproject["project"]["dependencies"])


def test_published_text_encoder_with_dropout_loads_in_eval_mode(published_cache):
    snapshot = published_cache / "models--THUDM--CogVideoX-2b" / "snapshots" / tiny_hub.COMMIT
    encoder = loading.load_text_encoder(snapshot, torch.float32)
    assert encoder.config.dropout_rate == 0.1 and not encoder.training
    ids = torch.tensor([[5, 6, 7, 1]])
    assert torch.equal(encoder(ids).last_hidden_state, encoder(ids).last_hidden_state)


def test_wan_published_layouts_shard_as_the_repos_do(published_cache):
    def snapshot(repo):
        return published_cache / f"models--Wan-AI--{repo}-Diffusers" / "snapshots" / tiny_hub.COMMIT

    def shards(folder, stem):
        index = json.loads((folder / f"{stem}.safetensors.index.json").read_text())
        return sorted(set(index["weight_map"].values()))

    i2v, a14b, ti2v = snapshot("Wan2.1-I2V-14B-480P"), snapshot("Wan2.2-T2V-A14B"), snapshot("Wan2.2-TI2V-5B")
    assert shards(snapshot("Wan2.1-T2V-14B") / "transformer", "diffusion_pytorch_model")[-1].endswith(
        "-of-00012.safetensors"
    )
    assert shards(i2v / "text_encoder", "model")[-1] == "model-00005-of-00005.safetensors"
    assert shards(i2v / "transformer", "diffusion_pytorch_model")[-1].endswith("-of-00014.safetensors")
    assert (i2v / "image_encoder" / "model.safetensors").is_file()
    assert (i2v / "image_processor" / "preprocessor_config.json").is_file()
    index = json.loads((i2v / "model_index.json").read_text())
    assert index["image_encoder"] == ["transformers", "CLIPVisionModel"]
    assert index["image_processor"] == ["transformers", "CLIPImageProcessor"]
    assert json.loads((i2v / "transformer" / "config.json").read_text())["in_channels"] == 36
    assert shards(a14b / "text_encoder", "model")[-1] == "model-00003-of-00003.safetensors"
    for expert in ("transformer", "transformer_2"):
        assert shards(a14b / expert, "diffusion_pytorch_model")[-1].endswith("-of-00012.safetensors")
    assert json.loads((a14b / "model_index.json").read_text())["boundary_ratio"] == 0.875
    i2v_a14b = json.loads((snapshot("Wan2.2-I2V-A14B") / "model_index.json").read_text())
    assert i2v_a14b["boundary_ratio"] == 0.9 and i2v_a14b["image_encoder"] == [None, None]
    index = json.loads((ti2v / "model_index.json").read_text())
    assert index["expand_timesteps"] is True and index["transformer_2"] == [None, None]
    vae = json.loads((ti2v / "vae" / "config.json").read_text())
    assert (vae["z_dim"], vae["scale_factor_spatial"], vae["patch_size"]) == (48, 16, 2)
    config = json.loads((a14b / "text_encoder" / "config.json").read_text())
    assert config["torch_dtype"] == "bfloat16" and config["dropout_rate"] == 0.1
