"""Where `--lora` finds its file: a path that does not exist is a missing file (not a hub repo id), and a
hub repo that cannot be fetched says so in `--lora`'s terms. No test reaches the network."""

import pytest

from vidgen.core.errors import VidgenError
from vidgen.runtime.lora import locate


@pytest.fixture
def offline(tmp_path, monkeypatch):
    """An empty current folder and hub cache, with HF_HUB_OFFLINE set."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub-cache"))
    return tmp_path


@pytest.mark.parametrize("source", ["lora/missing.safetensors", "owner/style.safetensors"])
def test_a_missing_safetensors_path_is_no_such_file_not_a_hub_repo(offline, source):
    with pytest.raises(VidgenError) as caught:
        locate(source)
    assert f"--lora '{source}': no such file" in caught.value.message
    assert "hub" not in str(caught.value).casefold().replace("hub repo id", "")


def test_a_missing_lora_file_is_one_line_and_exit_2(offline, invoke_cli):
    run = invoke_cli("t2v", "--model", "tiny-cogvideox", "a cat", "--lora", "lora/missing.safetensors")
    assert run.exit_code == 2, (run.stderr, run.exception)
    assert len(run.stderr_lines) == 1 and "'lora/missing.safetensors': no such file" in run.stderr


def test_an_offline_hub_lora_names_lora_and_a_local_file_not_model(offline):
    with pytest.raises(VidgenError) as caught:
        locate("someone/style")
    text = str(caught.value)
    assert "--lora 'someone/style'" in text and "HF_HUB_OFFLINE" in text
    assert "--lora /path/to/" in text and "--model" not in text
