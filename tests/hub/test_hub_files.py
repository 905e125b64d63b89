"""Which repo files vidgen fetches, and where the cache is: read from the environment at each call."""

from vidgen.weights import hub
from vidgen.weights.hub import RemoteFile


def test_select_keeps_weights_configs_and_tokenizer_files_only():
    names = [
        "model_index.json",
        "README.md",
        "tokenizer/spiece.model",
        "tokenizer/tokenizer.json",
        "tokenizer/tokenizer_config.json",
        "text_encoder/config.json",
        "text_encoder/model-00001-of-00002.safetensors",
        "text_encoder/model.safetensors.index.json",
        "text_encoder/pytorch_model-00001-of-00002.bin",
        "text_encoder/pytorch_model.bin.index.json",
        "transformer/diffusion_pytorch_model.safetensors",
        "transformer/diffusion_pytorch_model.fp16.safetensors",
        "transformer/diffusion_pytorch_model.fp16-00001-of-00002.safetensors",
        "transformer/diffusion_pytorch_model.safetensors.index.fp16.json",
        "vae/diffusion_pytorch_model.bin",
        "vae/diffusion_pytorch_model.safetensors",
        "scheduler/scheduler_config.json",
        "unet/diffusion_pytorch_model.safetensors",
        "assets/demo.mp4",
    ]
    chosen = [file.path for file in hub.select([RemoteFile(name, 1) for name in names])]
    assert chosen == sorted(
        [
            "model_index.json",
            "scheduler/scheduler_config.json",
            "text_encoder/config.json",
            "text_encoder/model-00001-of-00002.safetensors",
            "text_encoder/model.safetensors.index.json",
            "tokenizer/spiece.model",
            "tokenizer/tokenizer.json",
            "tokenizer/tokenizer_config.json",
            "transformer/diffusion_pytorch_model.safetensors",
            "vae/diffusion_pytorch_model.safetensors",
        ]
    )
    configs = [file.path for file in hub.select([RemoteFile(name, 1) for name in names], only_configs=True)]
    assert all(name.endswith(".json") for name in configs) and "tokenizer/tokenizer.json" in configs


def test_cache_root_follows_hf_hub_cache_then_hf_home(monkeypatch, tmp_path):
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "home"))
    assert hub.cache_root() == tmp_path / "home" / "hub"
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "cache"))
    assert hub.cache_root() == tmp_path / "cache"


def test_cached_snapshot_matches_ignoring_case_and_the_owner_move(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    snapshot = tmp_path / "models--zai-org--CogVideoX-2b" / "snapshots" / "abc"
    snapshot.mkdir(parents=True)
    (snapshot.parent.parent / "refs").mkdir()
    (snapshot.parent.parent / "refs" / "main").write_text("abc")
    assert hub.cached_snapshot("THUDM/CogVideoX-2b") == snapshot
    assert hub.cached_snapshot("zai-org/cogvideox-2B") == snapshot
    assert hub.cached_snapshot("THUDM/CogVideoX-5b") is None


def test_a_bad_hub_timeout_is_a_user_error(monkeypatch):
    import pytest

    from vidgen.core.errors import VidgenError

    monkeypatch.setenv("VIDGEN_HUB_TIMEOUT", "soon")
    with pytest.raises(VidgenError, match="VIDGEN_HUB_TIMEOUT=soon"):
        hub.timeout()
    monkeypatch.setenv("VIDGEN_HUB_TIMEOUT", "2.5")
    assert hub.timeout() == 2.5
