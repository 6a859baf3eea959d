"""The read-back after a push: read what this run wrote to the CRM and compare it with what was sent."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from handoff.push.config import PushConfig
from handoff.push.crm import CONTACTS, TASKS, CallFailed, Crm, Outcome, chunks
from handoff.push.payloads import QueueRow, task_properties

STAGE_ORDER = ("subscriber", "lead", "marketingqualifiedlead", "salesqualifiedlead", "opportunity", "customer",
               "evangelist")
CONTACT_READBACK = ("lifecyclestage", "handoff_score", "handoff_reasons", "handoff_sql_at")
TASK_READBACK = ("hs_task_subject", "hs_task_body", "hs_timestamp", "hs_task_status", "hs_task_priority",
                 "hs_task_type", "hubspot_owner_id", "handoff_dedupe_key")


def read_back_outcomes(crm: Crm, rows: list[QueueRow], sent_contacts: dict[str, dict[str, str]],
              acked_tasks: dict[str, str], config: PushConfig) -> list[tuple[QueueRow, Outcome, dict | None]]:
    """Each row's read-back outcome (succeeded, mismatch or failed) and the differences found, for the push log.

    ``sent_contacts``: crm contact id -> the properties this run wrote; ``acked_tasks``: dedupe key -> the task id
    this run created or recovered."""
    contacts: dict[str, dict[str, Any]] = {}
    tasks: dict[str, dict[str, Any]] = {}
    failures: list[str] = []
    for ids in chunks(sorted({r.crm_contact_id or "" for r in rows if r.crm_contact_id in sent_contacts}),
                      config.batch_size):
        try:
            contacts.update(crm.read(CONTACTS, ids, CONTACT_READBACK)[0])
        except CallFailed as exc:
            failures.append(f"contacts: {exc}")
            contacts.update(dict.fromkeys(ids, {"__unread__": True}))
    task_ids = sorted({acked_tasks[r.dedupe_key] for r in rows if r.dedupe_key in acked_tasks})
    for ids in chunks(task_ids, config.batch_size):
        try:
            tasks.update(crm.read(TASKS, ids, TASK_READBACK)[0])
        except CallFailed as exc:
            failures.append(f"tasks: {exc}")
            tasks.update(dict.fromkeys(ids, {"__unread__": True}))
    entries = []
    for row in rows:
        detail: dict[str, Any] = {}
        unread = False
        contact_id = row.crm_contact_id or ""
        if contact_id in sent_contacts:
            read = contacts.get(contact_id)
            unread |= bool(read and read.get("__unread__"))
            detail.update({f"contact.{k}": v for k, v in _diff(sent_contacts[contact_id], read).items()})
        if row.dedupe_key in acked_tasks:
            read = tasks.get(acked_tasks[row.dedupe_key])
            unread |= bool(read and read.get("__unread__"))
            detail.update({f"task.{k}": v for k, v in _diff(task_properties(row, config.sla_hours), read).items()})
        if unread:
            outcome = Outcome("failed", None, None, "read-back failed: " + "; ".join(failures)[:400])
        elif detail:
            outcome = Outcome("mismatch", 200, acked_tasks.get(row.dedupe_key),
                              "read-back differs from what was written: " + ", ".join(sorted(detail)))
        else:
            outcome = Outcome("succeeded", 200, acked_tasks.get(row.dedupe_key), None)
        entries.append((row, outcome, detail or None))
    return entries


def _same(name: str, sent: str, read: Any) -> bool:
    if read is None:
        return sent in ("", None)
    if name == "lifecyclestage":  # a rep may have moved it forward since; only backward is a mismatch
        return read in STAGE_ORDER and STAGE_ORDER.index(read) >= STAGE_ORDER.index(sent)
    if name in ("hs_timestamp", "handoff_sql_at"):
        try:
            return datetime.fromisoformat(sent.replace("Z", "+00:00")) == \
                datetime.fromisoformat(str(read).replace("Z", "+00:00"))
        except ValueError:
            return False
    if name == "handoff_score":
        try:
            return Decimal(sent or "0") == Decimal(str(read) or "0")
        except InvalidOperation:
            return False
    return str(read) == sent


def _diff(sent: dict[str, str], read: dict[str, Any] | None) -> dict[str, Any]:
    if read is None:
        return {"missing": {"sent": "record", "read": None}}
    if read.get("__unread__"):
        return {}
    return {k: {"sent": v, "read": read.get(k)} for k, v in sent.items() if not _same(k, v, read.get(k))}
