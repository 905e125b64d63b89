"""Fake Hugging Face caches laid out as the published repos are (tiny weights), and a hub that never
answers: no test here reaches the network."""

import socket
import threading

import pytest
import tiny_hub


@pytest.fixture(scope="session")
def published_cache(tmp_path_factory):
    """Every released preset's published layout, with tiny weights, in one hub cache folder."""
    cache = tmp_path_factory.mktemp("hf-hub-cache")
    work = tmp_path_factory.mktemp("published")
    for preset in tiny_hub.PUBLISHED:
        tiny_hub.cache_published(cache, preset, work)
    return cache


@pytest.fixture
def silent_hub(monkeypatch):
    """HF_ENDPOINT points at a socket on 127.0.0.1 that accepts connections and never answers; the
    fixture's value counts the connections made. Requests time out after one second."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    accepted = []

    def accept() -> None:
        while True:
            try:
                connection, _ = server.accept()
            except OSError:
                return
            accepted.append(connection)  # held open, never answered

    threading.Thread(target=accept, daemon=True).start()
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{server.getsockname()[1]}")
    monkeypatch.setenv("VIDGEN_HUB_TIMEOUT", "1")
    yield accepted
    server.close()
    for connection in accepted:
        connection.close()


@pytest.fixture
def hub_env(tmp_path, monkeypatch, silent_hub):
    """Run in an empty folder against `cache` (HF_HUB_CACHE) with HF_HUB_OFFLINE unset: only the local
    cache can answer. Returns a function that points HF_HUB_CACHE at a cache folder."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)

    def use(cache) -> None:
        monkeypatch.setenv("HF_HUB_CACHE", str(cache))

    use(tmp_path / "empty-cache")
    return use


@pytest.fixture
def own_cache(tmp_path):
    """`own_cache(preset)` -> (cache, snapshot): one preset's published layout in a cache of the test's
    own, to damage."""

    def build(preset: str, repo_id: str | None = None):
        cache = tmp_path / "cache"
        snapshot = tiny_hub.cache_published(cache, preset, tmp_path / "work", repo_id)
        return cache, snapshot

    return build


@pytest.fixture(scope="module")
def published_2b(tmp_path_factory):
    """CogVideoX-2b's published layout with tiny weights, for the fake hub to serve."""
    return tiny_hub.write_published(tmp_path_factory.mktemp("repo") / "CogVideoX-2b", "cogvideox-2b")
