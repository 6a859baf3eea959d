"""The end-to-end tests' HANDOFF_HOME: one per test module (tests/e2e/daily_run.py prepares it)."""

from __future__ import annotations

import pytest

from tests.e2e.daily_run import prepared_home


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    """(home, env, run): a fresh HANDOFF_HOME with its cluster up and the sample in place; the cluster is stopped
    at the end of the module."""
    home = tmp_path_factory.mktemp("handoff_home")
    env, run = prepared_home(home)
    yield home, env, run
    run("warehouse", "down", check=False)
