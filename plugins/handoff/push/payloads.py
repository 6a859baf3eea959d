"""What the push writes: a queue row (read by column name) and the contact/task properties built from it.
Pure functions: no I/O."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from handoff.push.config import SQL_STAGE

# Columns of marts.sql_handoff_queue the push reads (by name; extra columns are ignored).
REQUIRED_COLUMNS = ("contact_id", "crm_contact_id", "owner_id", "sql_at", "dedupe_key")
OPTIONAL_COLUMNS = ("score", "rules_fired", "rule_ids", "reasons", "top_content", "first_touch_channel",
                    "last_activity_at")


@dataclass(frozen=True)
class QueueRow:
    contact_id: str
    crm_contact_id: str | None
    owner_id: str | None
    sql_at: datetime
    dedupe_key: str
    score: Decimal | float | None = None
    rule_ids: str | None = None
    reasons: str | None = None
    top_content: str | None = None
    first_touch_channel: str | None = None
    last_activity_at: datetime | None = None

    @classmethod
    def from_record(cls, rec: dict[str, Any]) -> QueueRow:
        def text(name: str) -> str | None:
            value = rec.get(name)
            if isinstance(value, list | tuple):  # marts.sql_handoff_queue.rules_fired is a text[]
                value = ", ".join(str(v) for v in value)
            return None if value is None or str(value).strip() == "" else str(value).strip()

        return cls(contact_id=str(rec["contact_id"]), crm_contact_id=text("crm_contact_id"),
                   owner_id=text("owner_id"), sql_at=rec["sql_at"], dedupe_key=str(rec["dedupe_key"]),
                   score=rec.get("score"), rule_ids=text("rules_fired") or text("rule_ids"),
                   reasons=text("reasons"),
                   top_content=text("top_content"), first_touch_channel=text("first_touch_channel"),
                   last_activity_at=rec.get("last_activity_at"))


def hubspot_datetime(value: datetime) -> str:
    """ISO-8601 UTC with milliseconds and Z, the form HubSpot returns."""
    value = value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def score_text(score: Decimal | float | None) -> str:
    if score is None:
        return ""
    text = f"{Decimal(str(score)).normalize():f}"
    return "0" if text in ("-0", "") else text


def due_at(row: QueueRow, sla_hours: float) -> datetime:
    return row.sql_at + timedelta(hours=sla_hours)


def contact_properties(row: QueueRow) -> dict[str, str]:
    return {
        "lifecyclestage": SQL_STAGE,
        "handoff_score": score_text(row.score),
        "handoff_reasons": row.reasons or row.rule_ids or "",
        "handoff_sql_at": hubspot_datetime(row.sql_at),
    }


def task_properties(row: QueueRow, sla_hours: float) -> dict[str, str]:
    due = due_at(row, sla_hours)
    rules = ", ".join(r.strip() for r in (row.rule_ids or "").replace(";", ",").split(",") if r.strip())
    lines = [
        f"This contact became a Sales Qualified Lead on {row.sql_at.astimezone(UTC):%Y-%m-%d %H:%M} UTC"
        + (f" with a score of {score_text(row.score)}." if row.score is not None else "."),
        f"Rules that fired: {rules or 'none recorded'}",
    ]
    if row.reasons:
        lines.append(f"Why: {row.reasons}")
    lines.append(f"Top content: {row.top_content or 'none recorded'}")
    if row.first_touch_channel:
        lines.append(f"First touch: {row.first_touch_channel}")
    if row.last_activity_at:
        lines.append(f"Last activity: {row.last_activity_at.astimezone(UTC):%Y-%m-%d %H:%M} UTC")
    lines.append(f"Follow up by {due.astimezone(UTC):%Y-%m-%d %H:%M} UTC (SLA: {sla_hours:g} hours).")
    return {
        "hs_task_subject": f"Follow up new SQL within {sla_hours:g}h"
                           + (f" (score {score_text(row.score)})" if row.score is not None else ""),
        "hs_task_body": "\n".join(lines),
        "hs_timestamp": hubspot_datetime(due),
        "hs_task_status": "NOT_STARTED",
        "hs_task_priority": "HIGH",
        "hs_task_type": "TODO",
        "hubspot_owner_id": row.owner_id or "",
        "handoff_dedupe_key": row.dedupe_key,
    }
