from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from handoff.crm_sandbox import SandboxHandle, start_sandbox
from sandbox_support import TOKEN, FakeClock, Http, seed_small


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def state_path(tmp_path: Path) -> Path:
    path = tmp_path / "crm" / "sandbox.sqlite3"
    seed_small(path)
    return path


@pytest.fixture
def sandbox(state_path: Path, clock: FakeClock) -> Iterator[SandboxHandle]:
    handle = start_sandbox(state_path, token=TOKEN, rate_limit=None, clock=clock, sleep=lambda s: None)
    yield handle
    handle.stop()


@pytest.fixture
def hubspot_client(sandbox: SandboxHandle):
    from hubspot import HubSpot

    # Every SDK sub-client builds its Configuration from these kwargs, so `host` points them all
    # at the sandbox (equivalent to setting api_client.configuration.host on each).
    return HubSpot(access_token=TOKEN, host=sandbox.url)


@pytest.fixture
def http(sandbox: SandboxHandle) -> Http:
    return Http(sandbox.url)
