"""`vidgen download` against hubs that answer badly (tests/hub/fake_hub.py on 127.0.0.1): what a hub says
is never trusted as a path, nothing outside the cache is written or removed, and an answer that is not
the hub's, an offline run or a bad setting ends in one line (or, where the cache is complete, in
success with a note)."""

import hashlib

import pytest
import tiny_hub
from fake_hub import FakeHub

from vidgen.core.errors import VidgenError
from vidgen.weights import hub

REPO = "THUDM/CogVideoX-2b"


@pytest.fixture
def fake_hub(published_2b, hub_env, monkeypatch, tmp_path):
    """The 2b repo served on 127.0.0.1, an empty cache at tmp_path/cache."""
    hub_env(tmp_path / "cache")
    with FakeHub(REPO, published_2b) as served:
        monkeypatch.setenv("HF_ENDPOINT", served.url)
        yield served


def snapshot(tmp_path):
    return tmp_path / "cache" / "models--THUDM--CogVideoX-2b" / "snapshots" / tiny_hub.COMMIT


def one_line_error(run, *texts):
    """Exit code 2 and one error line (after any progress lines) holding `texts`."""
    assert run.exit_code == 2, (run.exit_code, run.stderr, run.exception)
    errors = [line for line in run.stderr_lines if line.startswith("error: ")]
    assert len(errors) == 1 and errors[0] == run.stderr_lines[-1], run.stderr
    for text in texts:
        assert text in errors[0], run.stderr


def words(text: str) -> str:
    """`text` with the console's line wrapping undone."""
    return " ".join(text.split())


def test_an_etag_that_climbs_out_of_the_cache_is_refused_and_nothing_is_written_there(
    fake_hub, invoke_cli, tmp_path
):
    fake_hub.etag = "../../../somewhere/x"
    run = invoke_cli("download", "cogvideox-2b")
    one_line_error(run, "ETag", "../../../somewhere/x")
    assert not (tmp_path / "somewhere").exists()


def test_a_commit_id_that_climbs_out_of_the_cache_is_refused_and_deletes_nothing(
    fake_hub, invoke_cli, tmp_path
):
    victim = tmp_path / "victim"
    (victim / "transformer").mkdir(parents=True)
    (victim / "model_index.json").write_text("{}")
    (victim / "transformer" / "config.json").write_text("{}")
    fake_hub.commit = "../../../victim"
    for command in (("download", "cogvideox-2b", "--dry-run"), ("download", "cogvideox-2b")):
        one_line_error(invoke_cli(*command), "commit", "../../../victim")
    assert (victim / "model_index.json").read_text() == "{}"
    assert (victim / "transformer" / "config.json").read_text() == "{}"
    assert not any(path.is_symlink() for path in victim.rglob("*"))


def test_a_damaged_link_to_a_file_outside_the_cache_loses_the_link_not_the_file(
    fake_hub, invoke_cli, tmp_path
):
    assert invoke_cli("download", "cogvideox-2b").exit_code == 0
    precious = tmp_path / "precious.json"
    precious.write_text('{"mine": true}')  # not the size the hub lists for model_index.json
    entry = snapshot(tmp_path) / "model_index.json"
    entry.unlink()
    entry.symlink_to(precious)
    run = invoke_cli("download", "cogvideox-2b")
    assert run.exit_code == 0, run.stderr
    assert precious.read_text() == '{"mine": true}'
    assert entry.read_bytes() == fake_hub.files["model_index.json"]


def test_a_captive_portal_page_instead_of_the_listing_is_one_line_not_a_traceback(fake_hub, invoke_cli):
    fake_hub.listing = b"<html><body>Log in to the airport Wi-Fi</body></html>"
    one_line_error(invoke_cli("download", "cogvideox-2b"), "not the hub's answer")


def test_a_captive_portal_with_the_model_complete_in_the_cache_is_only_unreachable(
    fake_hub, invoke_cli, tmp_path
):
    assert invoke_cli("download", "cogvideox-2b").exit_code == 0
    fake_hub.listing = b"<html><body>Log in to the airport Wi-Fi</body></html>"
    run = invoke_cli("download", "cogvideox-2b")
    assert run.exit_code == 0, (run.stderr, run.exception)
    assert "complete" in run.stdout and "could not be asked for updates" in words(run.stderr)


def test_offline_download_of_a_model_complete_in_the_cache_succeeds_with_a_note(
    hub_env, own_cache, invoke_cli, monkeypatch
):
    cache, _ = own_cache("cogvideox-2b")
    hub_env(cache)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    run = invoke_cli("download", "cogvideox-2b")
    assert run.exit_code == 0, run.stderr
    assert "complete" in run.stdout and "not fully" not in run.stderr
    assert "could not be asked for updates" in words(run.stderr) and "HF_HUB_OFFLINE" in run.stderr


def test_a_partial_file_longer_than_the_blob_starts_over_instead_of_asking_for_a_range_past_the_end(
    fake_hub, invoke_cli, tmp_path
):
    name = "vae/diffusion_pytorch_model.safetensors"
    data = fake_hub.files[name]
    blobs = tmp_path / "cache" / "models--THUDM--CogVideoX-2b" / "blobs"
    blobs.mkdir(parents=True)
    (blobs / f"{hashlib.sha256(data).hexdigest()}.incomplete").write_bytes(data + b"stale tail")
    run = invoke_cli("download", "cogvideox-2b")
    assert run.exit_code == 0, run.stderr
    assert (snapshot(tmp_path) / name).read_bytes() == data


@pytest.mark.parametrize("value", ["inf", "1e20", "nan", "0", "-1"])
def test_a_hub_timeout_out_of_range_is_refused_naming_the_range(monkeypatch, value):
    monkeypatch.setenv("VIDGEN_HUB_TIMEOUT", value)
    with pytest.raises(VidgenError, match=f"VIDGEN_HUB_TIMEOUT={value} .*between 0 and "):
        hub.timeout()


def test_an_endless_hub_timeout_is_one_line_from_download(fake_hub, invoke_cli, monkeypatch):
    monkeypatch.setenv("VIDGEN_HUB_TIMEOUT", "1e20")
    one_line_error(invoke_cli("download", "cogvideox-2b"), "VIDGEN_HUB_TIMEOUT=1e20")


@pytest.mark.parametrize("dry_run", [(), ("--dry-run",)])
def test_download_of_a_tiny_model_succeeds_saying_it_is_built_not_downloaded(hub_env, invoke_cli, dry_run):
    run = invoke_cli("download", "tiny-cogvideox", *dry_run)
    assert run.exit_code == 0, run.stderr
    assert "built" in run.stdout and "nothing to download" in run.stdout and run.stderr == ""


def test_a_dry_run_with_the_hub_unreachable_says_what_it_cannot_know(hub_env, silent_hub, invoke_cli):
    run = invoke_cli("download", "cogvideox-2b", "--dry-run")
    one_line_error(run, "unreachable", "unknown")
    assert "cannot be downloaded" not in run.stderr


def test_an_offline_dry_run_of_a_model_complete_in_the_cache_lists_it_as_complete(
    hub_env, own_cache, invoke_cli, monkeypatch
):
    cache, _ = own_cache("cogvideox-2b")
    hub_env(cache)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    run = invoke_cli("download", "cogvideox-2b", "--dry-run")
    assert run.exit_code == 0, run.stderr
    assert "0 to download" in run.stdout and "could not be asked for updates" in run.stdout
