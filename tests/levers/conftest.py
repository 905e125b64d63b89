"""The speed levers under test: CLI runs in an empty folder, offline."""

import pytest


@pytest.fixture(autouse=True)
def workdir(offline_workdir):
    return offline_workdir
