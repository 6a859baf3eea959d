"""One push run: read the queue, check, write, recover and verify. See the package docstring for the protocol."""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from handoff.push import config as cfg
from handoff.push.crm import CONTACTS, TASKS, CallFailed, Crm, Outcome, chunks
from handoff.push.log import KeyState, PushLog
from handoff.push.payloads import (
    OPTIONAL_COLUMNS,
    REQUIRED_COLUMNS,
    QueueRow,
    contact_properties,
    due_at,
    hubspot_datetime,
    task_properties,
)
from handoff.push.transport import as_transport

log = logging.getLogger(__name__)

QUEUE = "marts.sql_handoff_queue"
LOCK_KEY = "handoff.push"  # one push at a time per warehouse (pg advisory lock on hashtext of this)
STAGE_ORDER = ("subscriber", "lead", "marketingqualifiedlead", "salesqualifiedlead", "opportunity", "customer",
               "evangelist")
CONTACT_READBACK = ("lifecyclestage", "handoff_score", "handoff_reasons", "handoff_sql_at")
TASK_READBACK = ("hs_task_subject", "hs_task_body", "hs_timestamp", "hs_task_status", "hs_task_priority",
                 "hs_task_type", "hubspot_owner_id", "handoff_dedupe_key")


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
        for rec in cur:
            row = QueueRow.from_record(rec)
            if row.dedupe_key in seen:
                duplicates += 1
                continue
            seen.add(row.dedupe_key)
            rows.append(row)
    return rows, duplicates


def invalid_reason(row: QueueRow) -> str | None:
    if not row.crm_contact_id:
        return "crm_contact_id is null: the contact is not in the CRM, nothing to update"
    if not row.crm_contact_id.isdigit():
        return f"crm_contact_id {row.crm_contact_id!r} is not a CRM record id"
    if not row.owner_id:
        return "owner_id is null: no owner to give the follow-up task to"
    return None


class Push:
    def __init__(self, conn: psycopg.Connection, crm: Crm, run_id: str, config: cfg.PushConfig) -> None:
        self.conn = conn
        self.crm = crm
        self.config = config
        self.log = PushLog(conn, run_id)
        self.states: dict[str, KeyState] = {}
        self.counts: Counter[str] = Counter()
        self.sent_contacts: dict[str, dict[str, str]] = {}   # crm contact id -> properties written this run
        self.acked_tasks: dict[str, str] = {}                 # dedupe key -> task id acknowledged this run
        self.updated_rows: list[QueueRow] = []

    # -- the run ----------------------------------------------------------------------------------------------
    def run(self, rows: list[QueueRow]) -> dict[str, Any]:
        self.counts["orphans_settled"] = self.log.settle_orphans()
        self.states = self.log.state([r.dedupe_key for r in rows])
        pending: list[QueueRow] = []
        invalid: list[tuple[QueueRow, Outcome, None]] = []
        for row in rows:
            st = self.states[row.dedupe_key]
            if st.acknowledged:
                self.counts["already_acknowledged"] += 1
            elif reason := invalid_reason(row):
                invalid.append((row, Outcome("parked", None, None, reason), None))
            else:
                pending.append(row)
        self._terminal("validate", invalid)

        to_update = self.check_lifecycle([r for r in pending if not self.states[r.dedupe_key].update_done])
        for _ in range(self.config.rounds):
            to_update = self.update_contacts(to_update)
            if not to_update:
                break
        for _ in range(self.config.rounds):
            open_rows = [r for r in pending if self._wants_task(r)]
            if not open_rows:
                break
            self.create_tasks(open_rows)
        if self.config.readback:
            self.read_back([r for r in pending if r.crm_contact_id in self.sent_contacts
                            or r.dedupe_key in self.acked_tasks])
        self.counts["retry_next_run"] = sum(1 for r in pending if not self.states[r.dedupe_key].acknowledged)
        return self.summary(len(rows))

    def summary(self, queued: int) -> dict[str, Any]:
        keys = ("already_acknowledged", "contacts_updated", "tasks_created", "tasks_recovered", "skipped", "parked",
                "retry_next_run", "readback_checked", "readback_mismatches", "orphans_settled")
        out: dict[str, Any] = {"queued": queued, **{k: self.counts[k] for k in keys}}
        out["crm_requests"] = sum(self.crm.calls.values())
        out["crm_requests_by_operation"] = dict(sorted(self.crm.calls.items()))
        return out

    def _wants_task(self, row: QueueRow) -> bool:
        st = self.states[row.dedupe_key]
        return st.update_done and not st.acknowledged

    def _terminal(self, action: str, entries: list[tuple[QueueRow, Outcome, None]]) -> None:
        for row, outcome, _ in entries:
            self.states[row.dedupe_key].terminal = f"{outcome.status}: {outcome.reason}"
            self.counts[outcome.status] += 1
        self.log.record(action, entries, self.states)

    def _exhausted(self, rows: list[QueueRow], action: str) -> list[QueueRow]:
        """Park rows whose write already failed ``max_attempts`` times (across runs); return the others."""
        keep, parked = [], []
        for row in rows:
            failures = self.states[row.dedupe_key].failures[action]
            if failures >= self.config.max_attempts:
                parked.append((row, Outcome("parked", None, None, f"gave up: {action} failed {failures} times "
                                                                  f"(max_attempts={self.config.max_attempts})"), None))
            else:
                keep.append(row)
        self._terminal(action, parked)
        return keep

    # -- 1. lifecycle check: never move a contact backward ---------------------------------------------------------
    def check_lifecycle(self, rows: list[QueueRow]) -> list[QueueRow]:
        by_contact: dict[str, list[QueueRow]] = defaultdict(list)
        for row in rows:
            by_contact[row.crm_contact_id or ""].append(row)
        allowed: list[QueueRow] = []
        for ids in chunks(list(by_contact), self.config.batch_size):
            try:
                found, missing = self.crm.read(CONTACTS, ids, ["lifecyclestage"])
            except CallFailed as exc:
                failed = [(r, Outcome("failed", exc.http_status, None, f"lifecycle check: {exc}"), None)
                          for cid in ids for r in by_contact[cid]]
                self.log.record("check_lifecycle", failed, self.states)
                continue
            terminal = []
            for cid in ids:
                stage = (found.get(cid) or {}).get("lifecyclestage") or ""
                for row in by_contact[cid]:
                    if cid in missing:
                        terminal.append((row, Outcome("parked", 207, None, f"contact {cid} not found in the CRM "
                                                                           "(deleted or archived)"), None))
                    elif stage in cfg.NO_DOWNGRADE_STAGES:
                        terminal.append((row, Outcome("skipped", 200, cid, f"the CRM has lifecyclestage={stage}: "
                                                      "handoff never moves a contact backward (no update, no task)"),
                                         None))
                    else:
                        allowed.append(row)
            self._terminal("check_lifecycle", terminal)
        return allowed

    # -- 2. contact updates (idempotent: same values) ------------------------------------------------------------
    def update_contacts(self, rows: list[QueueRow]) -> list[QueueRow]:
        """One pass; returns the rows to try again (failed or unknown, attempts left)."""
        rows = self._exhausted(rows, "update_contact")
        by_contact: dict[str, list[QueueRow]] = defaultdict(list)
        for row in rows:
            by_contact[row.crm_contact_id or ""].append(row)
        retry: list[QueueRow] = []
        for ids in chunks(list(by_contact), self.config.batch_size):
            chunk = [r for cid in ids for r in by_contact[cid]]
            # two SQLs of one contact in a run: the latest one's values (rows are ordered by sql_at)
            props = {cid: contact_properties(by_contact[cid][-1]) for cid in ids}
            push_ids = self.log.begin("update_contact", chunk, self.states)
            outcomes = self.crm.update_contacts(props)
            finished = []
            for row in chunk:
                outcome = outcomes[row.crm_contact_id or ""]
                finished.append((push_ids[row.dedupe_key], outcome))
                st = self.states[row.dedupe_key]
                if outcome.status == "succeeded":
                    st.update_done = True
                    self.sent_contacts[row.crm_contact_id or ""] = props[row.crm_contact_id or ""]
                    self.counts["contacts_updated"] += 1
                elif outcome.status in ("parked", "skipped"):
                    st.terminal = f"{outcome.status}: {outcome.reason}"
                    self.counts[outcome.status] += 1
                else:
                    st.failures["update_contact"] += 1
                    retry.append(row)
            self.log.finish(finished)
        return retry

    # -- 3. tasks: look up what may exist, create the rest ---------------------------------------------------------
    def create_tasks(self, rows: list[QueueRow]) -> None:
        """One pass: resolve in-doubt rows by a dedupe-key search, then batch-create the rest."""
        creatable: list[QueueRow] = []
        in_doubt = [r for r in rows if self.states[r.dedupe_key].task_in_doubt]
        for chunk in chunks(in_doubt, self.config.batch_size):
            try:
                found = self.crm.search_tasks([r.dedupe_key for r in chunk])
            except CallFailed as exc:
                self.log.record("find_task", [(r, Outcome("failed", exc.http_status, None, str(exc)), None)
                                              for r in chunk], self.states)
                continue  # still in doubt: never create without knowing
            recovered, absent = [], []
            for row in chunk:
                st = self.states[row.dedupe_key]
                if row.dedupe_key in found:
                    st.task_id = found[row.dedupe_key]
                    self.acked_tasks[row.dedupe_key] = st.task_id
                    self.counts["tasks_recovered"] += 1
                    recovered.append((row, Outcome("succeeded", 200, st.task_id, "found by handoff_dedupe_key: an "
                                                   "earlier attempt created it but its answer was lost"), None))
                else:
                    st.last_task_status = "absent"
                    absent.append((row, Outcome("succeeded", 200, None, "no live task with this handoff_dedupe_key"),
                                   None))
                    creatable.append(row)
            self.log.record("find_task", absent, self.states)
            self.log.record("create_task", recovered, self.states)
        searched = {r.dedupe_key for r in in_doubt}
        creatable += [r for r in rows if r.dedupe_key not in searched and not self.states[r.dedupe_key].task_in_doubt
                      and not self.states[r.dedupe_key].acknowledged]
        creatable = self._exhausted(creatable, "create_task")
        for chunk in chunks(creatable, self.config.batch_size):
            tasks = {r.dedupe_key: (r.crm_contact_id or "", task_properties(r, self.config.sla_hours)) for r in chunk}
            push_ids = self.log.begin("create_task", chunk, self.states)
            outcomes = self.crm.create_tasks(tasks)
            finished = []
            for row in chunk:
                outcome = outcomes[row.dedupe_key]
                finished.append((push_ids[row.dedupe_key], outcome))
                st = self.states[row.dedupe_key]
                st.last_task_status = outcome.status
                if outcome.status == "succeeded":
                    st.task_id = outcome.object_id
                    self.acked_tasks[row.dedupe_key] = outcome.object_id or ""
                    self.counts["tasks_recovered" if outcome.http_status == 409 else "tasks_created"] += 1
                elif outcome.status in ("parked", "skipped"):
                    st.terminal = f"{outcome.status}: {outcome.reason}"
                    self.counts[outcome.status] += 1
                else:
                    st.failures["create_task"] += 1
            self.log.finish(finished)

    # -- 4. read back what this run wrote ----------------------------------------------------------------------------
    def read_back(self, rows: list[QueueRow]) -> None:
        contacts: dict[str, dict[str, Any]] = {}
        tasks: dict[str, dict[str, Any]] = {}
        failures: list[str] = []
        for ids in chunks(sorted({r.crm_contact_id or "" for r in rows if r.crm_contact_id in self.sent_contacts}),
                          self.config.batch_size):
            try:
                contacts.update(self.crm.read(CONTACTS, ids, CONTACT_READBACK)[0])
            except CallFailed as exc:
                failures.append(f"contacts: {exc}")
                contacts.update(dict.fromkeys(ids, {"__unread__": True}))
        task_ids = sorted({self.acked_tasks[r.dedupe_key] for r in rows if r.dedupe_key in self.acked_tasks})
        for ids in chunks(task_ids, self.config.batch_size):
            try:
                tasks.update(self.crm.read(TASKS, ids, TASK_READBACK)[0])
            except CallFailed as exc:
                failures.append(f"tasks: {exc}")
                tasks.update(dict.fromkeys(ids, {"__unread__": True}))
        entries = []
        for row in rows:
            detail: dict[str, Any] = {}
            unread = False
            cid = row.crm_contact_id or ""
            if cid in self.sent_contacts:
                got = contacts.get(cid)
                unread |= bool(got and got.get("__unread__"))
                detail.update({f"contact.{k}": v for k, v in _diff(self.sent_contacts[cid], got).items()})
            if row.dedupe_key in self.acked_tasks:
                got = tasks.get(self.acked_tasks[row.dedupe_key])
                unread |= bool(got and got.get("__unread__"))
                detail.update({f"task.{k}": v for k, v in _diff(task_properties(row, self.config.sla_hours),
                                                                   got).items()})
            if unread:
                outcome = Outcome("failed", None, None, "read-back failed: " + "; ".join(failures)[:400])
            elif detail:
                outcome = Outcome("mismatch", 200, self.acked_tasks.get(row.dedupe_key),
                                  "read-back differs from what was written: " + ", ".join(sorted(detail)))
                self.counts["readback_mismatches"] += 1
            else:
                outcome = Outcome("succeeded", 200, self.acked_tasks.get(row.dedupe_key), None)
            self.counts["readback_checked"] += 1
            entries.append((row, outcome, detail or None))
        self.log.record("readback", entries)


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


# -- dry run ------------------------------------------------------------------------------------------------------
def preview(conn: psycopg.Connection, rows: Sequence[QueueRow], run_id: str, config: cfg.PushConfig) -> dict:
    """Write what a push would do to ops.crm_push_preview (replacing this run_id's rows). Calls nothing."""
    states = PushLog(conn, run_id).state([r.dedupe_key for r in rows])
    out: list[tuple] = []
    counts: Counter[str] = Counter()

    def add(row: QueueRow, action: str, reason: str, payload: dict | None) -> None:
        counts[action] += 1
        out.append((run_id, row.contact_id, row.crm_contact_id, row.sql_at, row.dedupe_key, action, reason,
                    Jsonb(payload) if payload is not None else None))

    for row in rows:
        st = states[row.dedupe_key]
        if st.acknowledged:
            add(row, "skip", f"already acknowledged ({st.terminal or 'task ' + str(st.task_id)}); the queue is "
                             "stale until dbt runs again", None)
            continue
        if reason := invalid_reason(row):
            add(row, "skip", f"would park: {reason}", None)
            continue
        exhausted = [a for a in ("update_contact", "create_task") if st.failures[a] >= config.max_attempts]
        if exhausted:
            add(row, "skip", f"would park: {exhausted[0]} already failed {st.failures[exhausted[0]]} times", None)
            continue
        if not st.update_done:
            add(row, "update", "would check lifecycle first (batch read of lifecyclestage, not done in a dry run): "
                               "skipped if the CRM has opportunity, customer or evangelist; else set to "
                               "salesqualifiedlead", {"id": row.crm_contact_id, "properties": contact_properties(row)})
        reason = f"would create the follow-up task for owner {row.owner_id}, due " \
                 f"{hubspot_datetime(due_at(row, config.sla_hours))}"
        if st.task_in_doubt:
            reason += "; would first look the task up by handoff_dedupe_key (an earlier attempt has no known outcome)"
        add(row, "create", reason, {
            "properties": task_properties(row, config.sla_hours),
            "associations": [{"to": {"id": row.crm_contact_id}, "types": [
                {"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": cfg.TASK_TO_CONTACT_ASSOCIATION}]}]})
    with conn.transaction():
        conn.execute("delete from ops.crm_push_preview where run_id = %s", [run_id])
        with conn.cursor() as cur:
            cur.executemany("insert into ops.crm_push_preview (run_id, contact_id, crm_contact_id, sql_at, dedupe_key, "
                            "action, reason, payload) values (%s, %s, %s, %s, %s, %s, %s, %s)", out)
    return {"queued": len(rows), "dry_run": True, "would_update": counts["update"], "would_create": counts["create"],
            "would_skip": counts["skip"], "crm_requests": 0}


# -- entry point ----------------------------------------------------------------------------------------------------
def push_queue(conninfo: str, client: Any = None, *, run_id: str, as_of: datetime, dry_run: bool = False,
               config: cfg.PushConfig | None = None) -> dict[str, Any]:
    """Push the new SQLs in marts.sql_handoff_queue (``sql_at < as_of``) to the CRM, exactly once each.

    ``client``: the run's CRM client (``handoff.crm.client.CrmClient``, whose single rate limiter governs every
    request) or any ``handoff.push.transport.Transport``. Unused with ``dry_run``. Returns counts only.
    """
    config = config or cfg.load()
    with psycopg.connect(conninfo, autocommit=True) as conn:
        rows, duplicates = read_queue(conn, as_of)
        if duplicates:
            log.warning("push: %s has %d duplicate dedupe_key rows; each key is pushed once", QUEUE, duplicates)
        if dry_run:
            return preview(conn, rows, run_id, config)
        if client is None:
            raise ValueError("push_queue needs a CRM client unless dry_run=True")
        crm = Crm(as_transport(client))
        _lock(conn, config)
        try:
            summary = Push(conn, crm, run_id, config).run(rows)
        finally:
            conn.execute("select pg_advisory_unlock(hashtext(%s))", [LOCK_KEY])
    summary["duplicate_queue_rows"] = duplicates
    log.info("push %s: %s", run_id, summary)
    progress = sum(summary[k] for k in ("contacts_updated", "tasks_created", "tasks_recovered", "skipped", "parked"))
    if summary["retry_next_run"] and not progress:
        # nothing is lost (nothing was acknowledged; the next run delivers), but a CRM outage must not look green
        raise CrmUnavailable(
            f"the CRM answered none of this push's requests usefully: {summary['retry_next_run']} new SQLs wait for "
            f"the next run, nothing was acknowledged. Check the handoff_crm connection (URL, token) and the CRM's "
            f"status; ops.crm_push_log (run_id {run_id!r}) has each row's error.")
    return summary


class CrmUnavailable(RuntimeError):
    """A push that could deliver nothing at all: the task fails loudly instead of reporting a quiet success."""


def _lock(conn: psycopg.Connection, config: cfg.PushConfig) -> None:
    conn.execute(f"set lock_timeout = '{int(config.lock_timeout_s * 1000)}ms'")
    try:
        conn.execute("select pg_advisory_lock(hashtext(%s))", [LOCK_KEY])
    except psycopg.errors.LockNotAvailable:
        raise RuntimeError(f"another push has held the push lock for over {config.lock_timeout_s:g} s; wait for it "
                           "to finish (or end it) and run again") from None
    finally:
        conn.execute("reset lock_timeout")
