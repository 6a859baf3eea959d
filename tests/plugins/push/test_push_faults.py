"""Exactly once under faults: lost answers, a storm of 429/503/timeouts, and a push killed mid-batch."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from handoff.crm_sandbox import Faults
from handoff.push import PushConfig, push_queue

from tests.plugins.push.support import AS_OF, TOKEN, Api, calls, client, log_rows, make_queue, queue_row
from tests.waiting import wait_until

REPO = Path(__file__).resolve().parents[3]
CREATE = "POST /crm/v3/objects/tasks/batch/create"
SEARCH = "POST /crm/v3/objects/tasks/search"


def assert_exactly_once(wh, handle, rows):
    """One task per SQL in the CRM (live or archived), each contact at SQL, and the log names that very task."""
    api = Api(handle.url)
    per_key = api.tasks_by_key()
    assert per_key == {r["dedupe_key"]: 1 for r in rows}
    stages = api.stages()
    assert {stages[r["crm_contact_id"]] for r in rows} == {"salesqualifiedlead"}
    live = {t["properties"]["handoff_dedupe_key"]: t["id"] for t in api.all("tasks", ["handoff_dedupe_key"])}
    logged = {r["dedupe_key"]: r["crm_object_id"] for r in log_rows(wh, "action = 'create_task' and status = "
                                                                        "'succeeded'")}
    assert logged == live


class LoseFirstCreate(httpx.HTTPTransport):
    """The first task batch-create is applied by the CRM but its answer never arrives ('lost' timeout mode)."""

    def __init__(self, handle) -> None:
        super().__init__()
        self.handle = handle
        self.armed = True

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if not (self.armed and request.url.path.endswith("/tasks/batch/create")):
            return super().handle_request(request)
        self.armed = False
        self.handle.set_faults(Faults(timeout=1.0, timeout_mode="lost", timeout_seconds=0))
        try:
            return super().handle_request(request)
        finally:
            self.handle.set_faults(None)


def test_lost_answer_then_next_run_looks_the_task_up_instead_of_creating_it_again(wh, crm, clock):
    handle = crm(30)
    rows = [queue_row(n) for n in range(1, 31)]
    make_queue(wh, rows)
    config = PushConfig(sla_hours=24, rounds=1)
    with client(handle.url, clock, max_attempts=1, transport=LoseFirstCreate(handle)) as crm_client:
        first = push_queue(wh.conninfo("pusher"), crm_client, run_id="day", as_of=AS_OF, config=config)
    assert (first["tasks_created"], first["retry_next_run"]) == (0, 30)
    assert {r["status"] for r in log_rows(wh, "action = 'create_task'")} == {"unknown"}
    assert sum(Api(handle.url).tasks_by_key().values()) == 30  # the CRM did create them

    handle.app.stats.reset()
    with client(handle.url, clock) as crm_client:
        second = push_queue(wh.conninfo("pusher"), crm_client, run_id="day", as_of=AS_OF, config=config)
    stats = handle.stats()
    assert (second["tasks_recovered"], second["tasks_created"], second["retry_next_run"]) == (30, 0, 0)
    assert (calls(stats, SEARCH), calls(stats, CREATE)) == (1, 0)
    assert calls(stats, "POST /crm/v3/objects/contacts/batch/update") == 0  # already succeeded: not re-sent
    assert_exactly_once(wh, handle, rows)


def test_lost_answer_retried_by_the_client_meets_the_409_and_recovers_in_the_same_run(wh, crm, clock):
    handle = crm(30)
    rows = [queue_row(n) for n in range(1, 31)]
    make_queue(wh, rows)
    with client(handle.url, clock, max_attempts=3, transport=LoseFirstCreate(handle)) as crm_client:
        summary = push_queue(wh.conninfo("pusher"), crm_client, run_id="day", as_of=AS_OF,
                             config=PushConfig(sla_hours=24))
    stats = handle.stats()
    assert stats["by_path"][CREATE] == {"0": 1, "409": 1}  # lost, then the client's retry hit the unique key
    assert calls(stats, SEARCH) == 1                         # the rest of that batch was looked up, not re-created
    assert (summary["tasks_recovered"], summary["tasks_created"], summary["retry_next_run"]) == (30, 0, 0)
    statuses = [r["status"] for r in log_rows(wh, "action = 'create_task' and contact_id = 'wh-2'")]
    assert statuses == ["unknown", "succeeded"]
    assert_exactly_once(wh, handle, rows)


def test_a_fault_storm_still_delivers_every_sql_exactly_once(wh, crm, clock):
    storm = Faults(seed=20261125, rate_limit_storm=0.3, storm_length=1, server_error=0.1, timeout=0.05,
                   timeout_mode="lost", timeout_seconds=0)
    handle = crm(300, faults=storm)
    rows = [queue_row(n) for n in range(1, 301)]
    make_queue(wh, rows)
    summaries = []
    with client(handle.url, clock, max_attempts=4) as crm_client:
        for day in range(5):
            summaries.append(push_queue(wh.conninfo("pusher"), crm_client, run_id=f"storm-{day}", as_of=AS_OF,
                                        config=PushConfig(sla_hours=24, max_attempts=10, batch_size=10)))
            if summaries[-1]["retry_next_run"] == 0:
                break
    stats = handle.stats()
    faults = stats["by_status"]  # batches of 10 so that the storm has a few hundred requests to hit
    assert faults["429"] > 0.2 * stats["total"] and faults["503"] > 0.05 * stats["total"]
    assert faults["0"] > 5  # answers lost after the CRM applied the request
    # the task look-ups after unknown outcomes are searches, held to 5 a second by the client (the sandbox shares
    # its clock): the sandbox's search limiter never had to refuse one
    assert calls(stats, SEARCH) > 0 and handle.app.search_limiter.refused == 0
    assert summaries[-1]["retry_next_run"] == 0
    assert sum(s["tasks_created"] + s["tasks_recovered"] for s in summaries) == 300
    assert not log_rows(wh, "status = 'parked'")
    handle.set_faults(None)  # the checks below read the CRM themselves
    assert_exactly_once(wh, handle, rows)


CHILD = """
import os, sys, threading
from datetime import datetime
sys.path.insert(0, os.path.join(os.environ["REPO"], "plugins"))
from handoff.crm.client import CrmClient
from handoff.push import PushConfig, push_queue

client = CrmClient(os.environ["CRM_URL"], os.environ["CRM_TOKEN"], timeout=10)
request = client._request

def held_after_first_create(method, path, **kw):
    resp = request(method, path, **kw)
    if path.endswith("/tasks/batch/create"):
        threading.Event().wait()  # the CRM has answered; the log write never comes: the parent kills us here
    return resp

if os.environ.get("HOLD_AFTER_FIRST_CREATE") == "1":
    client._request = held_after_first_create
push_queue(os.environ["PUSHER_DSN"], client, run_id="day", as_of=datetime.fromisoformat(os.environ["AS_OF"]),
           config=PushConfig(sla_hours=24))
"""



def test_killed_between_the_create_and_its_log_write_the_rerun_creates_no_duplicate(wh, crm, clock):
    handle = crm(250)
    rows = [queue_row(n) for n in range(1, 251)]
    make_queue(wh, rows)
    env = dict(os.environ, REPO=str(REPO), CRM_URL=handle.url, CRM_TOKEN=TOKEN, PUSHER_DSN=wh.conninfo("pusher"),
               AS_OF=AS_OF.isoformat(), HOLD_AFTER_FIRST_CREATE="1")
    child = subprocess.Popen([sys.executable, "-c", CHILD], env=env)
    try:
        def first_create_seen():
            if child.poll() is not None:
                raise AssertionError(f"the push exited ({child.returncode}) before its first task create")
            return calls(handle.stats(), CREATE) >= 1

        wait_until(first_create_seen, "the first task batch create")
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
        assert child.returncode == -signal.SIGKILL
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()

    assert sum(Api(handle.url).tasks_by_key().values()) == 100
    in_flight = log_rows(wh, "action = 'create_task'")
    assert len(in_flight) == 100 and {r["status"] for r in in_flight} == {"sent"}

    handle.app.stats.reset()
    with client(handle.url, clock) as crm_client:
        summary = push_queue(wh.conninfo("pusher"), crm_client, run_id="day", as_of=AS_OF,
                             config=PushConfig(sla_hours=24))
    stats = handle.stats()
    assert summary["orphans_settled"] == 100
    assert (summary["tasks_recovered"], summary["tasks_created"], summary["retry_next_run"]) == (100, 150, 0)
    assert (calls(stats, SEARCH), calls(stats, CREATE)) == (1, 2)
    assert calls(stats, "POST /crm/v3/objects/contacts/batch/update") == 0
    settled = log_rows(wh, "action = 'create_task' and contact_id = 'wh-1'")
    assert [r["status"] for r in settled] == ["unknown", "succeeded"]
    assert settled[0]["reason"].startswith("no outcome recorded")
    assert_exactly_once(wh, handle, rows)


@pytest.mark.soak
@pytest.mark.parametrize("trial", range(5))
def test_push_killed_at_a_random_point_then_rerun_delivers_exactly_once(wh, crm, clock, trial):
    """SIGKILL the push after a random number of CRM calls (the seed in any failure): the rerun settles what was
    in flight, and every SQL ends with exactly one task."""
    seed = int(os.environ.get("HANDOFF_KILL_SEED", random.randrange(10**6))) + trial
    handle = crm(250)
    rows = [queue_row(n) for n in range(1, 251)]
    make_queue(wh, rows)
    env = dict(os.environ, REPO=str(REPO), CRM_URL=handle.url, CRM_TOKEN=TOKEN, PUSHER_DSN=wh.conninfo("pusher"),
               AS_OF=AS_OF.isoformat(), HOLD_AFTER_FIRST_CREATE="0")
    kill_after = random.Random(seed).randint(1, 12)
    child = subprocess.Popen([sys.executable, "-c", CHILD], env=env)
    try:
        def posts() -> int:
            return sum(calls(stats, path) for stats in [handle.stats()] for path in stats["by_path"]
                       if path.startswith("POST "))

        wait_until(lambda: child.poll() is not None or posts() >= kill_after, f"{kill_after} CRM calls")
    finally:
        child.kill()
        child.wait()
    with client(handle.url, clock) as crm_client:
        push_queue(wh.conninfo("pusher"), crm_client, run_id="rerun", as_of=AS_OF, config=PushConfig(sla_hours=24))
    print(f"killed after {kill_after} calls (HANDOFF_KILL_SEED={seed - trial})")
    assert_exactly_once(wh, handle, rows)


@pytest.mark.parametrize("status", [401, 403])
def test_a_refused_token_stops_the_run_with_a_message(wh, crm, clock, status):
    from handoff.push.crm import CrmAuthError, whole_call_outcome
    from handoff.push.transport import Answer

    with pytest.raises(CrmAuthError, match="check the handoff_crm connection"):
        whole_call_outcome("batch update contacts", Answer(status, {"message": "nope"}), None)
