"""The dry run: what a push would do, written to ops.crm_push_preview, with no call to the CRM at all."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import psycopg
from psycopg.types.json import Jsonb

from handoff.push import config as cfg
from handoff.push.log import PushLog
from handoff.push.payloads import QueueRow, contact_properties, due_at, hubspot_datetime, task_properties
from handoff.push.queue_rows import invalid_reason


def preview(conn: psycopg.Connection, rows: Sequence[QueueRow], run_id: str, config: cfg.PushConfig) -> dict:
    """Write what a push would do to ops.crm_push_preview (replacing this run_id's rows). Calls nothing."""
    states = PushLog(conn, run_id).state([r.dedupe_key for r in rows])
    preview_rows: list[tuple] = []
    counts: Counter[str] = Counter()

    def add(row: QueueRow, action: str, reason: str, payload: dict | None) -> None:
        counts[action] += 1
        preview_rows.append((run_id, row.contact_id, row.crm_contact_id, row.sql_at, row.dedupe_key, action, reason,
                             Jsonb(payload) if payload is not None else None))

    for row in rows:
        state = states[row.dedupe_key]
        if state.acknowledged:
            add(row, "skip", f"already acknowledged ({state.terminal or 'task ' + str(state.task_id)}); the queue is "
                             "stale until dbt runs again", None)
            continue
        if reason := invalid_reason(row):
            add(row, "skip", f"would park: {reason}", None)
            continue
        exhausted = [a for a in ("update_contact", "create_task") if state.failures[a] >= config.max_attempts]
        if exhausted:
            add(row, "skip", f"would park: {exhausted[0]} already failed {state.failures[exhausted[0]]} times", None)
            continue
        if not state.update_done:
            add(row, "update", "would check lifecycle first (batch read of lifecyclestage, not done in a dry run): "
                               "skipped if the CRM has opportunity, customer or evangelist; else set to "
                               "salesqualifiedlead", {"id": row.crm_contact_id, "properties": contact_properties(row)})
        reason = f"would create the follow-up task for owner {row.owner_id}, due " \
                 f"{hubspot_datetime(due_at(row, config.sla_hours))}"
        if state.task_in_doubt:
            reason += "; would first look the task up by handoff_dedupe_key (an earlier attempt has no known outcome)"
        add(row, "create", reason, {
            "properties": task_properties(row, config.sla_hours),
            "associations": [{"to": {"id": row.crm_contact_id}, "types": [
                {"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": cfg.TASK_TO_CONTACT_ASSOCIATION}]}]})
    with conn.transaction():
        conn.execute("delete from ops.crm_push_preview where run_id = %s", [run_id])
        with conn.cursor() as cur:
            cur.executemany("insert into ops.crm_push_preview (run_id, contact_id, crm_contact_id, sql_at, dedupe_key, "
                            "action, reason, payload) values (%s, %s, %s, %s, %s, %s, %s, %s)", preview_rows)
    return {"queued": len(rows), "dry_run": True, "would_update": counts["update"], "would_create": counts["create"],
            "would_skip": counts["skip"], "crm_requests": 0}
