"""Shared by every test: tiny models build into one throwaway cache per session, never the user's."""

import pytest


@pytest.fixture(scope="session", autouse=True)
def _tiny_model_cache(tmp_path_factory):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("VIDGEN_CACHE", str(tmp_path_factory.mktemp("vidgen-cache")))
        yield
