"""Shared by every test: tiny models build into one throwaway cache per session, never the user's."""

import pytest
import torch


@pytest.fixture(scope="session", autouse=True)
def _tiny_model_cache(tmp_path_factory):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("VIDGEN_CACHE", str(tmp_path_factory.mktemp("vidgen-cache")))
        yield


@pytest.fixture(scope="session", autouse=True)
def _one_thread():
    # Every model in the suite is tiny: intra-op threads cost more than they save (measured up to 5x the
    # CPU on a busy 2-core machine). Both sides of a parity test run under the same setting.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
