from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from handoff.crm_sandbox import SandboxHandle, start_sandbox

from tests.plugins.push.support import TOKEN, FakeClock, seed_crm


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def crm(tmp_path: Path) -> Iterator[Callable[..., SandboxHandle]]:
    """Seed (``seed_crm`` arguments) and start a sandbox: unlimited unless told, never sleeping (an injected
    timeout answers at once), faults as given."""
    handles: list[SandboxHandle] = []

    def start(n_contacts: int, *, stages: dict[int, str] | None = None, archived: tuple[int, ...] = (),
              rate_limit: Any = None, faults: Any = None) -> SandboxHandle:
        state = tmp_path / f"crm{len(handles)}" / "sandbox.sqlite3"
        state.parent.mkdir(parents=True)
        seed_crm(state, n_contacts, stages, archived)
        handle = start_sandbox(state, token=TOKEN, rate_limit=rate_limit, faults=faults, sleep=lambda s: None)
        handles.append(handle)
        return handle

    yield start
    for handle in handles:
        handle.stop()
