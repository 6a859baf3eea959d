"""The push's input: the rows of marts.sql_handoff_queue, read by column name, and whether a row can be pushed."""

from __future__ import annotations

from datetime import datetime

import psycopg
from psycopg.rows import dict_row

from handoff.push.payloads import OPTIONAL_COLUMNS, REQUIRED_COLUMNS, QueueRow

QUEUE = "marts.sql_handoff_queue"


def read_queue(conn: psycopg.Connection, as_of: datetime) -> tuple[list[QueueRow], int]:
    """The queue rows with ``sql_at < as_of``, oldest first, by column name. Returns (rows, duplicate keys)."""
    with conn.cursor(row_factory=dict_row) as cur:
        try:
            cur.execute(f"select * from {QUEUE} where sql_at < %s order by sql_at, dedupe_key", [as_of])  # noqa: S608
        except psycopg.errors.UndefinedTable:
            raise RuntimeError(f"{QUEUE} does not exist: run dbt (the push reads the model it builds)") from None
        except psycopg.errors.InsufficientPrivilege as exc:
            raise RuntimeError(f"the pusher role cannot read {QUEUE} ({exc}); the model's `grants` config must "
                               "give select to handoff_pusher") from None
        columns = [d.name for d in cur.description or []]
        missing = [c for c in REQUIRED_COLUMNS if c not in columns]
        if missing:
            raise RuntimeError(f"{QUEUE} lacks column(s) {', '.join(missing)} the push needs (has: "
                               f"{', '.join(columns)}); expected {', '.join(REQUIRED_COLUMNS + OPTIONAL_COLUMNS)}")
        rows: list[QueueRow] = []
        seen: set[str] = set()
        duplicates = 0
        for record in cur:
            row = QueueRow.from_record(record)
            if row.dedupe_key in seen:
                duplicates += 1
                continue
            seen.add(row.dedupe_key)
            rows.append(row)
    return rows, duplicates


def invalid_reason(row: QueueRow) -> str | None:
    """Why a row cannot be pushed at all (it is parked), or None."""
    if not row.crm_contact_id:
        return "crm_contact_id is null: the contact is not in the CRM, nothing to update"
    if not row.crm_contact_id.isdigit():
        return f"crm_contact_id {row.crm_contact_id!r} is not a CRM record id"
    if not row.owner_id:
        return "owner_id is null: no owner to give the follow-up task to"
    return None
