"""Reverse ETL: hand each new SQL in ``marts.sql_handoff_queue`` to the CRM exactly once, with an audit trail.

    push_queue(conninfo, client, run_id=..., as_of=interval_end, dry_run=False) -> dict of counts

Per SQL (one queue row, keyed by ``dedupe_key``): read the contact's lifecycle stage (batch read); if the CRM
already has it at opportunity, customer or evangelist, skip it (never downgrade); else set
``lifecyclestage=salesqualifiedlead`` plus ``handoff_score``/``handoff_reasons``/``handoff_sql_at`` (batch
update) and create one follow-up task for the owner (batch create; due ``sql_at`` + ``sla.sql_follow_up_hours``;
associated to the contact, type 204; unique ``handoff_dedupe_key``). Then read back what was written and log
any mismatch (action ``readback``). Every call is a batch of at most 100; all requests go through the one
client (one rate limiter) passed in.

Exactly once (ops.crm_push_log, one row per attempt per SQL and action):
1. Before a write call, each row's attempt is logged as ``sent`` and committed; after it, the row gets its
   outcome (succeeded / failed / unknown / parked / skipped). One push runs at a time (advisory lock).
2. A run starts by settling ``sent`` rows (a run died between call and log write) to ``unknown``.
3. A task is created only for SQLs whose last create attempt is definitely unsuccessful or absent; SQLs whose
   last attempt is ``unknown`` are first looked up by ``handoff_dedupe_key`` (search, IN filter, ≤100), and a
   task found is recorded as succeeded with its id. No lookup is spent on rows never attempted.
4. The CRM's unique ``handoff_dedupe_key`` is the backstop: a 409 on create names the existing task, which is
   recorded as succeeded; the rest of that batch becomes ``unknown`` and is looked up before a retry.
5. Contact updates are idempotent (same values) and are not re-sent once succeeded. Rows the CRM rejects for
   good (deleted contact, invalid owner, validation errors) are ``parked``; transient failures are retried in
   later passes and runs until ``max_attempts`` failed attempts per action, then parked.

The acknowledgement contract (what the dbt model of ``marts.sql_handoff_queue`` excludes): a dedupe_key is
acknowledged by the CRM once ops.crm_push_log has a row with

    (action = 'create_task' and status = 'succeeded') or status in ('parked', 'skipped')

exposed as the view ``ops.crm_push_acknowledged(dedupe_key, contact_id, acknowledged_at, outcome, action,
crm_object_id, reason)`` (one row per acknowledged key; ``ACKNOWLEDGED_PREDICATE`` holds the same text).

Dry run: writes the would-be changes to ops.crm_push_preview (update/create/skip, reason, payload) and calls
nothing at all on the CRM, not even the lifecycle read ("would check lifecycle" in the reason).
"""

from handoff.push.config import PushConfig
from handoff.push.log import ACKNOWLEDGED_PREDICATE
from handoff.push.run import push_queue
from handoff.push.throughput import floor_seconds, requests_needed
from handoff.push.transport import NoAnswer, Transport, as_transport

__all__ = ["ACKNOWLEDGED_PREDICATE", "NoAnswer", "PushConfig", "Transport",
           "as_transport", "floor_seconds", "push_queue", "requests_needed"]
