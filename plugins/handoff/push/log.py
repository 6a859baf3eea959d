"""ops.crm_push_log: the push's write-ahead audit trail, and the per-row state read back from it.

Each statement runs in autocommit: a 'sent' row is durable before the CRM call it announces.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import psycopg
from psycopg.types.json import Jsonb

from handoff.push.crm import Outcome
from handoff.push.payloads import QueueRow

WRITE_ACTIONS = ("update_contact", "create_task")
TERMINAL = ("parked", "skipped")
IN_DOUBT = ("sent", "unknown")

# What the dbt model excludes (docs/architecture.md, "Mart contracts": not yet acknowledged by the CRM); also
# ops.crm_push_acknowledged.
ACKNOWLEDGED_PREDICATE = ("(action = 'create_task' and status = 'succeeded') "
                          "or status in ('parked', 'skipped')")


@dataclass
class KeyState:
    """What the log says about one SQL (dedupe key) before this run touches it."""

    attempts: Counter[str] = field(default_factory=Counter)   # per action, every attempt
    failures: Counter[str] = field(default_factory=Counter)   # per write action: failed or unknown attempts
    update_done: bool = False
    task_id: str | None = None
    terminal: str | None = None          # 'parked: reason' / 'skipped: reason'
    last_task_status: str | None = None  # the latest create_task attempt's status

    @property
    def task_in_doubt(self) -> bool:
        """A create_task attempt may have reached the CRM without us learning its outcome."""
        return self.task_id is None and self.last_task_status in IN_DOUBT

    @property
    def acknowledged(self) -> bool:
        return self.task_id is not None or self.terminal is not None


class PushLog:
    def __init__(self, conn: psycopg.Connection, run_id: str) -> None:
        if not conn.autocommit:
            raise ValueError("the push log needs an autocommit connection (each 'sent' row commits before the call)")
        self.conn = conn
        self.run_id = run_id

    def settle_orphans(self) -> int:
        """'sent' rows left by a run that died between the CRM call and the log write become 'unknown'.

        Called under the push lock, so no other push has a call in flight."""
        cur = self.conn.execute(
            "update ops.crm_push_log set status = 'unknown', finished_at = clock_timestamp(), "
            "reason = 'no outcome recorded: the push stopped between the CRM call and the log write' "
            "where status = 'sent'")
        return cur.rowcount

    def state(self, keys: Sequence[str]) -> dict[str, KeyState]:
        states = {k: KeyState() for k in keys}
        rows = self.conn.execute(
            "select dedupe_key, action, status, crm_object_id, reason from ops.crm_push_log "
            "where dedupe_key = any(%s) and action <> 'readback' order by push_id", [list(keys)]).fetchall()
        for key, action, status, object_id, reason in rows:
            st = states[key]
            st.attempts[action] += 1
            if action in WRITE_ACTIONS and status in ("failed", "unknown", "sent"):
                st.failures[action] += 1
            if status in TERMINAL and st.terminal is None:
                st.terminal = f"{status}: {reason or action}"
            if action == "update_contact" and status == "succeeded":
                st.update_done = True
            if action == "create_task":
                st.last_task_status = status
                if status == "succeeded":
                    st.task_id = object_id
        return states

    def begin(self, action: str, rows: Sequence[QueueRow], states: dict[str, KeyState]) -> dict[str, int]:
        """Announce an attempt per row ('sent'), durably, before the CRM call. Returns {dedupe_key: push_id}."""
        if not rows:
            return {}
        for row in rows:
            states[row.dedupe_key].attempts[action] += 1
        result = self.conn.execute(
            "insert into ops.crm_push_log (run_id, contact_id, crm_contact_id, sql_at, dedupe_key, action, attempt, "
            "status) select %s, c, cc, s, k, %s, a, 'sent' from unnest(%s::text[], %s::text[], %s::timestamptz[], "
            "%s::text[], %s::int[]) as u(c, cc, s, k, a) returning dedupe_key, push_id",
            [self.run_id, action, [r.contact_id for r in rows], [r.crm_contact_id for r in rows],
             [r.sql_at for r in rows], [r.dedupe_key for r in rows],
             [states[r.dedupe_key].attempts[action] for r in rows]]).fetchall()
        return dict(result)

    def finish(self, outcomes: Iterable[tuple[int, Outcome]]) -> None:
        """Record each attempt's outcome on its 'sent' row."""
        items = list(outcomes)
        if not items:
            return
        self.conn.execute(
            "update ops.crm_push_log l set status = u.status, http_status = u.http, crm_object_id = u.obj, "
            "reason = u.reason, finished_at = clock_timestamp() "
            "from unnest(%s::bigint[], %s::text[], %s::int[], %s::text[], %s::text[]) as u(id, status, http, obj, "
            "reason) where l.push_id = u.id",
            [[i for i, _ in items], [o.status for _, o in items], [o.http_status for _, o in items],
             [o.object_id for _, o in items], [o.reason for _, o in items]])

    def record(self, action: str, entries: Sequence[tuple[QueueRow, Outcome, dict | None]],
               states: dict[str, KeyState] | None = None) -> None:
        """Insert finished rows for steps that write nothing to the CRM (checks, lookups, read-backs)."""
        if not entries:
            return
        attempts = []
        for row, _, _ in entries:
            if states is not None:
                states[row.dedupe_key].attempts[action] += 1
                attempts.append(states[row.dedupe_key].attempts[action])
            else:
                attempts.append(1)
        self.conn.execute(
            "insert into ops.crm_push_log (run_id, contact_id, crm_contact_id, sql_at, dedupe_key, action, attempt, "
            "status, http_status, crm_object_id, reason, detail, finished_at) "
            "select %s, c, cc, s, k, %s, a, st, h, o, r, d, clock_timestamp() from unnest(%s::text[], %s::text[], "
            "%s::timestamptz[], %s::text[], %s::int[], %s::text[], %s::int[], %s::text[], %s::text[], %s::jsonb[]) "
            "as u(c, cc, s, k, a, st, h, o, r, d)",
            [self.run_id, action, [r.contact_id for r, _, _ in entries], [r.crm_contact_id for r, _, _ in entries],
             [r.sql_at for r, _, _ in entries], [r.dedupe_key for r, _, _ in entries], attempts,
             [o.status for _, o, _ in entries], [o.http_status for _, o, _ in entries],
             [o.object_id for _, o, _ in entries], [o.reason for _, o, _ in entries],
             [Jsonb(d) if d is not None else None for _, _, d in entries]])
