"""The CRM is unavailable (every request answered 503) for a whole push run, then comes back."""

from __future__ import annotations

import psycopg
import pytest
from handoff.crm_sandbox import Faults
from handoff.push import PushConfig, push_queue
from handoff.push.run import CrmUnavailable

from tests.plugins.push.support import AS_OF, Api, client, log_rows, make_queue, queue_row

N = 25
CONFIG = PushConfig(sla_hours=24, batch_size=10)


def acknowledged(wh) -> list[tuple]:
    with psycopg.connect(wh.conninfo("admin")) as conn:
        return conn.execute("select dedupe_key, outcome from ops.crm_push_acknowledged").fetchall()


def push_while_down(wh, handle, clock) -> dict:
    """One push against a CRM that answers 503 to everything; returns the summary (if the push returns)."""
    with client(handle.url, clock, max_attempts=3) as crm_client:
        return push_queue(wh.conninfo("pusher"), crm_client, run_id="day-1", as_of=AS_OF, config=CONFIG)


def assert_nothing_delivered(wh, handle) -> None:
    stats = handle.stats()
    assert stats["total"] > 0, "the push never called the CRM"
    assert set(stats["by_status"]) == {"503"}, stats["by_status"]  # the CRM answered nothing else
    assert not log_rows(wh, "status = 'succeeded'")
    assert not log_rows(wh, "status in ('parked', 'skipped')")  # an outage is not a reason to give up on a SQL
    assert acknowledged(wh) == []


def assert_delivered_exactly_once_after_recovery(wh, handle, clock, rows) -> None:
    handle.set_faults(Faults(down=False))
    with client(handle.url, clock) as crm_client:
        summary = push_queue(wh.conninfo("pusher"), crm_client, run_id="day-2", as_of=AS_OF, config=CONFIG)
    assert (summary["tasks_created"], summary["tasks_recovered"], summary["retry_next_run"]) == (N, 0, 0)
    api = Api(handle.url)
    assert api.tasks_by_key() == {r["dedupe_key"]: 1 for r in rows}
    stages = api.stages()
    assert {stages[r["crm_contact_id"]] for r in rows} == {"salesqualifiedlead"}
    assert {k for k, _ in acknowledged(wh)} == {r["dedupe_key"] for r in rows}


def test_crm_unavailable_for_the_whole_run(wh, crm, clock):
    """The push must fail loudly (naming the CRM), acknowledge nothing, and the next run delivers each SQL once."""
    handle = crm(N, faults=Faults(down=True))
    rows = [queue_row(n) for n in range(1, N + 1)]
    make_queue(wh, rows)
    with pytest.raises(CrmUnavailable, match=r"the CRM answered none of this push's requests.*25 new SQLs wait"):
        push_while_down(wh, handle, clock)
    assert_nothing_delivered(wh, handle)
    assert_delivered_exactly_once_after_recovery(wh, handle, clock, rows)
