"""Broken, incomplete and unreachable models: each is one line on stderr, exit code 2, naming the file
and the repair, before any weights load. No test reaches the network (see conftest.silent_hub)."""

import json
import shutil
import time

import pytest
import tiny_hub
import torch
from safetensors.torch import load_file, save_file

TINY_ARGS = ("--height", "64", "--width", "96", "--frames", "9", "--steps", "1", "--dtype", "fp32")
TINY_ARGS += ("--seed", "1")


@pytest.fixture
def t2v(invoke_cli, monkeypatch):
    """`t2v(model)` runs a tiny-sized `vidgen t2v` and returns the Run; weights never finish loading
    in these tests (loading them would mean the check came too late)."""

    def never_load(*args, **kwargs):
        raise AssertionError("weights were loaded")

    from vidgen.weights import loading

    def run(model: str):
        with monkeypatch.context() as patch:
            patch.setattr(loading, "load_text_encoder", never_load)
            patch.setattr(loading, "load_diffusers_model", never_load)
            return invoke_cli("t2v", "--model", model, "a cat", *TINY_ARGS, "-o", "out.mp4")

    return run


def one_line_error(run, *texts):
    """The run failed with exit code 2 and one error line (notes may come before it) holding `texts`."""
    assert run.exit_code == 2, (run.exit_code, run.stderr, run.exception)
    lines = [line for line in run.stderr_lines if not line.startswith("note: ")]
    assert len(lines) == 1 and lines[0].startswith("error: "), run.stderr
    for text in texts:
        assert text in lines[0], run.stderr
    return lines[0]


def dereference(snapshot, relative):
    """Replace a snapshot's link by a copy of its blob, so a test can change that one file."""
    path = snapshot / relative
    data = path.read_bytes()
    path.unlink()
    path.write_bytes(data)
    return path


def test_not_cached_and_offline_says_so_with_the_command_and_cache(hub_env, t2v, monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    line = one_line_error(t2v("cogvideox-2b"), "HF_HUB_OFFLINE is set", "`vidgen download cogvideox-2b`")
    assert str(tmp_path / "empty-cache") in line


def test_not_cached_and_hub_never_answers_fails_within_the_timeout(hub_env, t2v, silent_hub):
    started = time.monotonic()
    line = one_line_error(t2v("cogvideox-2b"), "unreachable", "`vidgen download cogvideox-2b`")
    assert time.monotonic() - started < 8
    assert "127.0.0.1" in line and len(silent_hub) >= 1  # it did ask, and gave up


def test_hub_ids_match_the_cache_ignoring_case_and_follow_the_owner_move(hub_env, own_cache, invoke_cli):
    from vidgen.families import registry
    from vidgen.weights.presets import load_presets
    from vidgen.weights.sources import fetch_model, parse_model

    cache, snapshot = own_cache("cogvideox-2b", repo_id="zai-org/CogVideoX-2b")
    hub_env(cache)
    for model in ("thudm/cogvideox-2b", "ZAI-ORG/cogvideox-2B"):
        assert fetch_model(parse_model(model, load_presets()), registry.WEIGHTS).folder == snapshot
    run = invoke_cli("t2v", "--model", "cogvideox-2b", "a cat", *TINY_ARGS, "-o", "out.mp4")
    assert run.exit_code == 0, run.stderr


def test_configs_only_cache_names_the_missing_shard(hub_env, own_cache, t2v, silent_hub):
    cache, snapshot = own_cache("cogvideox-2b")
    for path in snapshot.rglob("*.safetensors"):
        path.unlink()
    hub_env(cache)
    one_line_error(
        t2v("cogvideox-2b"), "text_encoder/model-00001-of-00002.safetensors", "is missing",
        "`vidgen download cogvideox-2b`",
    )  # fmt: skip


@pytest.mark.parametrize("interrupted", [False, True])
def test_a_missing_shard_is_named(hub_env, own_cache, t2v, monkeypatch, interrupted):
    cache, snapshot = own_cache("cogvideox-5b")
    shard = snapshot / "transformer" / "diffusion_pytorch_model-00002-of-00002.safetensors"
    blob = shard.resolve()
    shard.unlink()
    if interrupted:  # the hub client's partial download: half the blob, named .incomplete
        blob.with_name(blob.name + ".incomplete").write_bytes(blob.read_bytes()[:100])
        blob.unlink()
    hub_env(cache)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    one_line_error(
        t2v("cogvideox-5b"),
        "transformer/diffusion_pytorch_model-00002-of-00002.safetensors",
        "vidgen download cogvideox-5b",
    )


def test_a_truncated_safetensors_file_is_named(hub_env, own_cache, t2v, monkeypatch):
    cache, snapshot = own_cache("cogvideox-2b")
    path = dereference(snapshot, "vae/diffusion_pytorch_model.safetensors")
    path.write_bytes(path.read_bytes()[:-1000])
    hub_env(cache)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    one_line_error(
        t2v("cogvideox-2b"),
        "vae/diffusion_pytorch_model.safetensors",
        "truncated",
        "vidgen download cogvideox-2b",
    )


def test_a_corrupt_safetensors_header_is_named(hub_env, own_cache, t2v, monkeypatch):
    cache, snapshot = own_cache("cogvideox-2b")
    path = dereference(snapshot, "text_encoder/model-00002-of-00002.safetensors")
    data = bytearray(path.read_bytes())
    data[8:40] = b"\x00garbage that is not JSON at al"
    path.write_bytes(bytes(data))
    hub_env(cache)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    one_line_error(
        t2v("cogvideox-2b"),
        "text_encoder/model-00002-of-00002.safetensors",
        "not a readable safetensors file",
    )


@pytest.mark.parametrize(
    "relative", ["text_encoder/model.safetensors.index.json", "transformer/config.json", "model_index.json"]
)
def test_broken_json_is_named(hub_env, own_cache, t2v, monkeypatch, relative):
    cache, snapshot = own_cache("cogvideox-2b")
    path = dereference(snapshot, relative)
    path.write_text(path.read_text()[:40])
    hub_env(cache)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    one_line_error(t2v("cogvideox-2b"), relative, "vidgen download cogvideox-2b")


@pytest.mark.parametrize("component", ["tokenizer", "vae"])
def test_a_missing_component_folder_is_named(hub_env, own_cache, t2v, monkeypatch, component):
    cache, snapshot = own_cache("cogvideox-2b")
    shutil.rmtree(snapshot / component)
    hub_env(cache)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    one_line_error(t2v("cogvideox-2b"), f"no {component}/ folder", "vidgen download cogvideox-2b")


@pytest.fixture
def local_folder(tmp_path):
    """A published-layout CogVideoX-2b as a plain local folder, to damage."""
    return tiny_hub.write_published(tmp_path / "model", "cogvideox-2b")


def test_a_pickled_only_folder_says_vidgen_never_unpickles(hub_env, local_folder, t2v):
    weights = local_folder / "vae" / "diffusion_pytorch_model.safetensors"
    torch.save(load_file(weights), local_folder / "vae" / "diffusion_pytorch_model.bin")
    weights.unlink()
    one_line_error(t2v(str(local_folder)), "vae", "diffusion_pytorch_model.bin", "never unpickles")


def test_a_local_folder_with_missing_weights_is_named(hub_env, local_folder, t2v):
    (local_folder / "transformer" / "diffusion_pytorch_model.safetensors").unlink()
    one_line_error(t2v(str(local_folder)), "transformer", "diffusion_pytorch_model.safetensors")


def test_a_local_folder_with_mis_shaped_weights_names_tensor_and_file(hub_env, local_folder, t2v):
    path = local_folder / "vae" / "diffusion_pytorch_model.safetensors"
    tensors = load_file(path)
    name = sorted(name for name in tensors if tensors[name].dim() == 4)[0]
    tensors[name] = torch.zeros(tensors[name].shape[0] + 1, *tensors[name].shape[1:])
    save_file(tensors, path)
    one_line_error(t2v(str(local_folder)), "vae/diffusion_pytorch_model.safetensors", name, "vae/config.json")


@pytest.mark.parametrize(
    "relative, key, value",
    [
        ("model_index.json", "vae", ["diffusers", "AutoencoderKL"]),
        ("text_encoder/config.json", "architectures", ["T5ForConditionalGeneration"]),
        ("transformer/config.json", "_class_name", "HeliosTransformer3DModel"),
        ("scheduler/scheduler_config.json", "_class_name", "EulerDiscreteScheduler"),
        # Any tokenizer class transformers has is accepted (tests/hub/test_tokenizer_classes.py).
    ],
)
def test_a_class_vidgen_does_not_run_is_named_with_its_file(hub_env, local_folder, t2v, relative, key, value):
    path = local_folder / relative
    path.write_text(json.dumps({**json.loads(path.read_text()), key: value}))
    one_line_error(t2v(str(local_folder)), relative, "which vidgen does not run")


def test_a_local_folder_wins_over_a_preset_of_the_same_name(hub_env, tmp_path, invoke_cli):
    tiny_hub.write_published(tmp_path / "cogvideox-2b", "cogvideox-2b")
    run = invoke_cli("t2v", "--model", "cogvideox-2b", "a cat", *TINY_ARGS, "-o", "out.mp4")
    assert run.exit_code == 0, run.stderr
    assert "is the local folder" in run.stderr and "not the preset cogvideox-2b" in run.stderr


def test_without_protobuf_the_older_tokenizer_set_is_a_one_line_error(
    hub_env, local_folder, t2v, monkeypatch
):
    import sys

    monkeypatch.setitem(sys.modules, "google.protobuf", None)  # as if it were not installed
    one_line_error(t2v(str(local_folder)), "spiece.model", "pip install protobuf")
