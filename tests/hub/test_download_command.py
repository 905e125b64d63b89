"""`vidgen download` and first-use downloads against a hub served on 127.0.0.1 (HF_ENDPOINT): only the
files vidgen reads, resumed and repaired, into the standard cache layout, then verified."""

import hashlib

import pytest
import tiny_hub
from fake_hub import FakeHub

REPO = "THUDM/CogVideoX-2b"
# What the published repos hold beside the files vidgen reads: pickled and variant copies, a README.
UNNEEDED = {
    "README.md": b"# CogVideoX-2b",
    "text_encoder/pytorch_model.bin": b"pickle" * 10,
    "transformer/diffusion_pytorch_model.fp16.safetensors": b"variant" * 10,
    "transformer/diffusion_pytorch_model.bin": b"pickle" * 10,
}
TINY_ARGS = ("--height", "64", "--width", "96", "--frames", "9", "--steps", "1", "--dtype", "fp32")
TINY_ARGS += ("--seed", "1", "-o", "out.mp4")


@pytest.fixture
def fake_hub(published_2b, hub_env, monkeypatch, tmp_path):
    """The 2b repo served on 127.0.0.1, an empty cache at tmp_path/cache."""
    hub_env(tmp_path / "cache")
    with FakeHub(REPO, published_2b, UNNEEDED) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        yield hub


def snapshot(tmp_path):
    return tmp_path / "cache" / "models--THUDM--CogVideoX-2b" / "snapshots" / tiny_hub.COMMIT


def fetched(hub):
    return sorted(path.split(tiny_hub.COMMIT + "/")[1] for method, path, _ in hub.requests if method == "GET"
                  and "/resolve/" in path)  # fmt: skip


def test_dry_run_lists_only_the_needed_files_with_sizes_and_writes_nothing(fake_hub, invoke_cli, tmp_path):
    run = invoke_cli("download", "cogvideox-2b", "--dry-run")
    assert run.exit_code == 0, run.stderr
    listed = [line.split()[0] for line in run.stdout.splitlines()[:-1]]
    assert listed == sorted(name for name in fake_hub.files if name not in UNNEEDED)
    assert "tokenizer/spiece.model" in listed and "text_encoder/model-00002-of-00002.safetensors" in listed
    total = sum(len(data) for name, data in fake_hub.files.items() if name not in UNNEEDED)
    assert f"14 files, {total / 1000:.1f} KB; 14 to download" in run.stdout.splitlines()[-1]
    assert not (tmp_path / "cache").exists() and fetched(fake_hub) == []


def test_download_fetches_the_needed_files_verifies_and_models_shows_it(fake_hub, invoke_cli, tmp_path):
    assert "no" in invoke_cli("models").stdout.split("cogvideox-2b")[1].splitlines()[0]
    run = invoke_cli("download", "cogvideox-2b")
    assert run.exit_code == 0, run.stderr
    assert "complete and verified" in run.stdout
    assert fetched(fake_hub) == sorted(name for name in fake_hub.files if name not in UNNEEDED)
    assert "14 files" in run.stderr and "14 to download" in run.stderr  # the total, before any file
    repo = tmp_path / "cache" / "models--THUDM--CogVideoX-2b"
    assert (repo / "refs" / "main").read_text() == tiny_hub.COMMIT
    assert (snapshot(tmp_path) / "tokenizer" / "spiece.model").is_symlink()  # the hub client's layout
    row = invoke_cli("models").stdout.split("cogvideox-2b")[1].splitlines()[0]
    assert "KB" in row and "partly" not in row
    again = invoke_cli("download", "cogvideox-2b")
    assert again.exit_code == 0 and "0 to download" in again.stderr


def test_an_interrupted_download_resumes_from_its_partial_file(fake_hub, invoke_cli, tmp_path):
    name = "vae/diffusion_pytorch_model.safetensors"
    data = fake_hub.files[name]
    blobs = tmp_path / "cache" / "models--THUDM--CogVideoX-2b" / "blobs"
    blobs.mkdir(parents=True)
    (blobs / f"{hashlib.sha256(data).hexdigest()}.incomplete").write_bytes(data[:1000])
    run = invoke_cli("download", "cogvideox-2b")
    assert run.exit_code == 0, run.stderr
    assert ("GET", f"/{REPO}/resolve/{tiny_hub.COMMIT}/{name}", "bytes=1000-") in fake_hub.requests
    assert (snapshot(tmp_path) / name).read_bytes() == data


def test_a_dropped_connection_fails_in_one_line_and_the_next_run_resumes(fake_hub, invoke_cli, tmp_path):
    name = "tokenizer/spiece.model"
    fake_hub.cut[name] = 5000
    first = invoke_cli("download", "cogvideox-2b")
    assert first.exit_code == 2 and len([line for line in first.stderr_lines if "error:" in line]) == 1
    assert "vidgen download cogvideox-2b" in first.stderr
    second = invoke_cli("download", "cogvideox-2b")
    assert second.exit_code == 0, second.stderr
    assert ("GET", f"/{REPO}/resolve/{tiny_hub.COMMIT}/{name}", "bytes=5000-") in fake_hub.requests
    assert (snapshot(tmp_path) / name).read_bytes() == fake_hub.files[name]


def test_download_repairs_a_truncated_file_and_keeps_the_whole_ones(fake_hub, invoke_cli, tmp_path):
    assert invoke_cli("download", "cogvideox-2b").exit_code == 0
    shard = snapshot(tmp_path) / "text_encoder" / "model-00002-of-00002.safetensors"
    blob = shard.resolve()
    blob.write_bytes(blob.read_bytes()[:-500])
    fake_hub.requests.clear()
    run = invoke_cli("download", "cogvideox-2b")
    assert run.exit_code == 0, run.stderr
    assert fetched(fake_hub) == ["text_encoder/model-00002-of-00002.safetensors"]
    assert shard.read_bytes() == fake_hub.files["text_encoder/model-00002-of-00002.safetensors"]


def test_a_corrupt_file_on_the_hub_fails_verification_in_one_line(fake_hub, invoke_cli):
    name = "transformer/diffusion_pytorch_model.safetensors"
    fake_hub.files[name] = b"\xff" * len(fake_hub.files[name])
    run = invoke_cli("download", "cogvideox-2b")
    assert run.exit_code == 2
    lines = [line for line in run.stderr_lines if line.startswith("error: ")]
    assert len(lines) == 1 and name in lines[0] and "not a readable safetensors file" in lines[0]


def test_generation_downloads_on_first_use_with_the_same_selection(fake_hub, invoke_cli, tmp_path):
    run = invoke_cli("t2v", "--model", "cogvideox-2b", "a cat", *TINY_ARGS)
    assert run.exit_code == 0, run.stderr
    assert fetched(fake_hub) == sorted(name for name in fake_hub.files if name not in UNNEEDED)
    assert (tmp_path / "out.mp4").is_file()


def test_download_with_a_hub_that_never_answers_fails_within_the_timeout(hub_env, silent_hub, invoke_cli):
    run = invoke_cli("download", "cogvideox-2b")
    assert run.exit_code == 2 and "unreachable" in run.stderr and len(run.stderr_lines) == 1


def test_download_of_an_unknown_model_is_a_one_line_error(hub_env, invoke_cli):
    run = invoke_cli("download", "cogvideox-3b")
    assert run.exit_code == 2 and "unknown" in run.stderr and len(run.stderr_lines) == 1


def test_download_of_a_repo_that_is_not_a_diffusers_model_is_a_one_line_error(
    hub_env, invoke_cli, tmp_path, monkeypatch
):
    folder = tmp_path / "repo"
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(b"weights")
    with FakeHub("someone/llm", folder) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        run = invoke_cli("download", "someone/llm", "--dry-run")
    assert run.exit_code == 2 and "no model_index.json" in run.stderr and len(run.stderr_lines) == 1
