from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from handoff.crm.client import CrmClient
from handoff.crm.properties import ensure_properties
from handoff.crm_sandbox import SandboxHandle, start_sandbox

from tests.plugins.push.support import TOKEN, FakeClock, seed_crm


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def crm(tmp_path: Path, clock: FakeClock) -> Iterator[Callable[..., SandboxHandle]]:
    """Seed (``seed_crm`` arguments) and start a sandbox: no 100 / 10 s limit unless told (the search limit of 5 per
    second always holds), never sleeping (an injected timeout answers at once), faults as given. handoff's custom
    properties are created through the API, as a user would (``ensure_properties``), before any fault is set."""
    handles: list[SandboxHandle] = []

    def start(n_contacts: int, *, stages: dict[int, str] | None = None, archived: tuple[int, ...] = (),
              rate_limit: Any = None, faults: Any = None, properties: bool = True) -> SandboxHandle:
        state = tmp_path / f"crm{len(handles)}" / "sandbox.sqlite3"
        state.parent.mkdir(parents=True)
        seed_crm(state, n_contacts, stages, archived)
        handle = start_sandbox(state, token=TOKEN, rate_limit=rate_limit, clock=clock, sleep=lambda s: None)
        handles.append(handle)
        with CrmClient(handle.url, TOKEN) as setup:
            assert not properties or ensure_properties(setup) == ["contacts.handoff_score", "contacts.handoff_reasons",
                                                "contacts.handoff_sql_at", "tasks.handoff_dedupe_key"]
        handle.set_faults(faults)
        handle.app.stats.reset()
        return handle

    yield start
    for handle in handles:
        handle.stop()
