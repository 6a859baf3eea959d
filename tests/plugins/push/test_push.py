"""The push against the CRM sandbox and the real warehouse: what it writes, how often it calls, what it logs."""

from __future__ import annotations

from datetime import timedelta

import psycopg
import pytest
from handoff.push import PushConfig, push_queue, requests_needed
from handoff.push.run import CrmUnavailable

from tests.plugins.push.support import AS_OF, Api, calls, client, log_rows, make_queue, queue_row

CONFIG = PushConfig(sla_hours=24)


def run(wh, handle, clock, run_id="run-1", **kwargs):
    with client(handle.url, clock) as crm_client:
        return push_queue(wh.conninfo("pusher"), crm_client, run_id=run_id, as_of=AS_OF,
                          config=kwargs.pop("config", CONFIG), **kwargs)


def test_new_sqls_reach_the_crm_once_and_a_rerun_sends_nothing(wh, crm, clock):
    handle = crm(5)
    rows = [queue_row(n) for n in range(1, 6)]
    make_queue(wh, rows)

    summary = run(wh, handle, clock)
    assert (summary["queued"], summary["contacts_updated"], summary["tasks_created"]) == (5, 5, 5)
    assert (summary["readback_checked"], summary["readback_mismatches"], summary["retry_next_run"]) == (5, 0, 0)

    api = Api(handle.url)
    assert api.stages() == {str(n): "salesqualifiedlead" for n in range(1, 6)}
    contact = api.http.get("/crm/v3/objects/contacts/2", params={
        "properties": "handoff_score,handoff_reasons,handoff_sql_at"}).json()["properties"]
    assert contact["handoff_score"] == "74.5"
    assert contact["handoff_reasons"] == "Requested a demo; viewed pricing 3 times; economic buyer"
    assert contact["handoff_sql_at"] == "2026-03-01T09:02:00.000Z"

    tasks = api.all("tasks", ["hs_task_subject", "hs_task_body", "hs_timestamp", "hs_task_status",
                              "hubspot_owner_id", "handoff_dedupe_key"], associations="contacts")
    by_key = {t["properties"]["handoff_dedupe_key"]: t for t in tasks}
    assert sorted(by_key) == sorted(r["dedupe_key"] for r in rows)
    task = by_key[rows[1]["dedupe_key"]]
    assert task["properties"]["hs_timestamp"] == "2026-03-02T09:02:00.000Z"  # sql_at + 24 h
    assert task["properties"]["hs_task_status"] == "NOT_STARTED"
    assert task["properties"]["hubspot_owner_id"] == "1"
    assert "Rules that fired: demo_request, pricing_page, fit_persona" in task["properties"]["hs_task_body"]
    assert "Top content: /ebooks/buyers-guide (decision)" in task["properties"]["hs_task_body"]
    assert task["associations"]["contacts"]["results"] == [{"id": "2", "type": "task_to_contact"}]

    # the log: a sent-then-succeeded row per write, the task id the CRM gave, and the acknowledgement view
    log = log_rows(wh, "action = 'create_task'")
    assert {(r["dedupe_key"], r["crm_object_id"], r["status"], r["attempt"]) for r in log} == {
        (k, t["id"], "succeeded", 1) for k, t in by_key.items()}
    assert all(r["finished_at"] >= r["attempted_at"] for r in log)
    with psycopg.connect(wh.conninfo("admin")) as conn:
        acked = conn.execute("select dedupe_key, outcome from ops.crm_push_acknowledged").fetchall()
    assert sorted(acked) == sorted((k, "succeeded") for k in by_key)

    # the same day again (task retry, or a rerun before dbt rebuilt the queue): nothing at all is sent
    handle.app.stats.reset()
    again = run(wh, handle, clock, run_id="run-1")
    assert handle.stats()["total"] == 0
    assert (again["already_acknowledged"], again["crm_requests"]) == (5, 0)
    assert sum(api.tasks_by_key().values()) == 5


def test_250_sqls_go_out_in_batches_of_at_most_100(wh, crm, clock):
    handle = crm(250)
    make_queue(wh, [queue_row(n) for n in range(1, 251)])
    summary = run(wh, handle, clock)
    stats = handle.stats()
    assert summary["tasks_created"] == 250
    assert calls(stats, "POST /crm/v3/objects/contacts/batch/read") == 6   # 3 lifecycle checks + 3 read-backs
    assert calls(stats, "POST /crm/v3/objects/contacts/batch/update") == 3
    assert calls(stats, "POST /crm/v3/objects/tasks/batch/create") == 3
    assert calls(stats, "POST /crm/v3/objects/tasks/batch/read") == 3
    assert calls(stats, "POST /crm/v3/objects/tasks/search") == 0      # nothing was in doubt
    assert stats["total"] == summary["crm_requests"] == requests_needed(250) == 15
    assert stats["by_status"] == {"200": 12, "201": 3}


def test_forward_only_contacts_already_past_sql_are_skipped_with_the_reason(wh, crm, clock):
    handle = crm(4, stages={2: "customer", 3: "opportunity", 4: "salesqualifiedlead"})
    rows = [queue_row(n) for n in range(1, 5)]
    make_queue(wh, rows)
    summary = run(wh, handle, clock)
    assert (summary["skipped"], summary["contacts_updated"], summary["tasks_created"]) == (2, 2, 2)

    api = Api(handle.url)
    assert api.stages() == {"1": "salesqualifiedlead", "2": "customer", "3": "opportunity", "4": "salesqualifiedlead"}
    assert set(api.tasks_by_key()) == {rows[0]["dedupe_key"], rows[3]["dedupe_key"]}
    skipped = {r["crm_contact_id"]: r["reason"] for r in log_rows(wh, "status = 'skipped'")}
    assert skipped == {
        "2": "the CRM has lifecyclestage=customer: handoff never moves a contact backward (no update, no task)",
        "3": "the CRM has lifecyclestage=opportunity: handoff never moves a contact backward (no update, no task)"}
    assert not log_rows(wh, "action = 'update_contact' and crm_contact_id in ('2', '3')")


def test_rows_that_cannot_succeed_are_parked_once_and_not_retried(wh, crm, clock):
    handle = crm(6, archived=(5,))
    rows = [queue_row(1), queue_row(2, owner_id="3"), queue_row(3, owner_id="999"), queue_row(4, crm_id=""),
            queue_row(5), queue_row(6)]
    make_queue(wh, rows)
    summary = run(wh, handle, clock)
    assert (summary["tasks_created"], summary["parked"], summary["retry_next_run"]) == (2, 4, 0)

    parked = {r["contact_id"]: (r["action"], r["reason"]) for r in log_rows(wh, "status = 'parked'")}
    assert parked["wh-2"][0] == parked["wh-3"][0] == "create_task"
    assert "INVALID_OWNER_ID" in parked["wh-2"][1] and "3 is not a valid owner id" in parked["wh-2"][1]
    assert "999 is not a valid owner id" in parked["wh-3"][1]
    assert parked["wh-4"] == ("validate", "crm_contact_id is null: the contact is not in the CRM, nothing to update")
    assert parked["wh-5"] == ("check_lifecycle", "contact 5 not found in the CRM (deleted or archived)")
    assert Api(handle.url).stages()["2"] == "salesqualifiedlead"  # the contact update itself went through

    handle.app.stats.reset()
    again = run(wh, handle, clock, run_id="run-2")
    assert handle.stats()["total"] == 0
    assert again["already_acknowledged"] == 6
    assert len(log_rows(wh, "status = 'parked'")) == 4


def test_transient_failures_are_parked_after_max_attempts_across_runs(wh, crm, clock):
    handle = crm(2, faults={"row_error_rate": 1.0})  # every batch row refused with a retryable error
    make_queue(wh, [queue_row(1), queue_row(2)])
    config = PushConfig(sla_hours=24, max_attempts=3, rounds=2)
    with pytest.raises(CrmUnavailable, match="2 new SQLs wait for the next run"):  # nothing went through: loud
        run(wh, handle, clock, config=config)
    assert not log_rows(wh, "status in ('succeeded', 'parked')")
    second = run(wh, handle, clock, run_id="run-2", config=config)
    assert (second["parked"], second["retry_next_run"]) == (2, 0)
    attempts = log_rows(wh, "action = 'update_contact'")
    assert [r["status"] for r in attempts if r["contact_id"] == "wh-1"] == ["failed", "failed", "failed", "parked"]
    assert "SANDBOX_INJECTED_FAULT" in attempts[0]["reason"]
    handle.app.stats.reset()
    run(wh, handle, clock, run_id="run-3", config=config)
    assert handle.stats()["total"] == 0


def test_dry_run_calls_nothing_and_writes_the_preview(wh, crm, clock):
    handle = crm(3)
    rows = [queue_row(1), queue_row(2), queue_row(3, owner_id=None)]
    make_queue(wh, rows)
    for _ in range(2):  # a repeated dry run replaces its own preview
        summary = run(wh, handle, clock, run_id="dry", dry_run=True)
    assert handle.stats()["total"] == 0
    assert summary == {"queued": 3, "dry_run": True, "would_update": 2, "would_create": 2, "would_skip": 1,
                       "crm_requests": 0}
    assert not log_rows(wh)
    with psycopg.connect(wh.conninfo("admin")) as conn:
        preview = conn.execute("select contact_id, action, reason, payload from ops.crm_push_preview "
                               "where run_id = 'dry' order by contact_id, action desc").fetchall()
    assert [(c, a) for c, a, _, _ in preview] == [("wh-1", "update"), ("wh-1", "create"), ("wh-2", "update"),
                                                 ("wh-2", "create"), ("wh-3", "skip")]
    update, create = preview[0], preview[1]
    assert update[2].startswith("would check lifecycle first")
    assert update[3] == {"id": "1", "properties": {"lifecyclestage": "salesqualifiedlead", "handoff_score": "73.5",
                                                   "handoff_reasons": rows[0]["reasons"],
                                                   "handoff_sql_at": "2026-03-01T09:01:00.000Z"}}
    assert create[3]["properties"]["hs_timestamp"] == "2026-03-02T09:01:00.000Z"
    assert create[3]["associations"][0]["types"][0]["associationTypeId"] == 204
    assert preview[4][2] == "would park: owner_id is null: no owner to give the follow-up task to"


def test_the_queue_is_read_by_column_name_up_to_as_of(wh, crm, clock):
    handle = crm(2)
    late = queue_row(2, sql_at=AS_OF + timedelta(hours=1))
    make_queue(wh, [queue_row(1), late])
    summary = run(wh, handle, clock)
    assert (summary["queued"], summary["tasks_created"]) == (1, 1)


def test_an_account_without_handoffs_custom_properties_refuses_the_push_and_says_which(wh, crm, clock):
    """HubSpot answers a write to a property the account lacks with 400 PROPERTY_DOESNT_EXIST for the whole batch;
    the push writes nothing, keeps every SQL for the next run and logs the property by name."""
    handle = crm(2, properties=False)
    make_queue(wh, [queue_row(1), queue_row(2)])
    with pytest.raises(CrmUnavailable, match="2 new SQLs wait for the next run"):
        run(wh, handle, clock)
    reasons = {r["reason"] for r in log_rows(wh, "action = 'update_contact'")}
    assert reasons and all("PROPERTY_DOESNT_EXIST" in r and "handoff_score" in r for r in reasons), reasons
    assert Api(handle.url).stages() == {"1": "marketingqualifiedlead", "2": "marketingqualifiedlead"}
    assert calls(handle.stats(), "POST /crm/v3/objects/tasks/batch/create") == 0


def test_an_sql_whose_contact_was_merged_reaches_the_surviving_contact(wh, crm, clock):
    """The warehouse still knows the merged-away id; the CRM answers it with the survivor (hs_merged_object_ids):
    the stage, the properties and the task land on the survivor, and the log says it succeeded."""
    handle = crm(3)
    api = Api(handle.url)
    merged = api.http.post("/crm/v3/objects/contacts/merge", json={"primaryObjectId": "1", "objectIdToMerge": "2"})
    assert merged.status_code == 200
    make_queue(wh, [queue_row(2)])
    summary = run(wh, handle, clock)
    assert (summary["contacts_updated"], summary["tasks_created"], summary["parked"], summary["retry_next_run"]) == (
        1, 1, 0, 0)
    assert api.stages() == {"1": "salesqualifiedlead", "3": "marketingqualifiedlead"}
    survivor = api.http.get("/crm/v3/objects/contacts/1", params={"properties": "handoff_sql_at",
                                                                  "associations": "tasks"}).json()
    assert survivor["properties"]["handoff_sql_at"] == "2026-03-01T09:02:00.000Z"
    [task] = survivor["associations"]["tasks"]["results"]
    assert {r["action"]: r["status"] for r in log_rows(wh)} == {
        "update_contact": "succeeded", "create_task": "succeeded", "readback": "succeeded"}  # read back as sent
    assert [r["crm_object_id"] for r in log_rows(wh, "action = 'create_task'")] == [task["id"]]
