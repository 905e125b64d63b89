"""The command line under test: run `vidgen` in-process, in an empty folder, never reaching the hub."""

import os

import pytest


@pytest.fixture(autouse=True)
def workdir(offline_workdir):
    """Each test runs in its own empty folder, offline."""
    return offline_workdir


@pytest.fixture
def files_in():
    """`files_in(folder)` -> every name under it, hidden partial files included."""

    def listing(folder) -> set[str]:
        return {
            os.path.relpath(os.path.join(root, name), folder)
            for root, dirs, files in os.walk(folder)
            for name in dirs + files
        }

    return listing
