"""One push run: read the queue, check, write, recover and verify. See the package docstring for the protocol.

Reading the queue (``queue_rows``), the dry run (``preview``) and the read-back comparison (``readback``) are
their own modules; this one is the run's order of steps, what each step logs, and the entry point."""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from datetime import datetime
from typing import Any

import psycopg

from handoff.push import config as cfg
from handoff.push.crm import CONTACTS, CallFailed, Crm, Outcome, chunks
from handoff.push.log import KeyState, PushLog
from handoff.push.payloads import QueueRow, contact_properties, task_properties
from handoff.push.preview import preview
from handoff.push.queue_rows import QUEUE, invalid_reason, read_queue
from handoff.push.readback import read_back_outcomes
from handoff.push.transport import as_transport

log = logging.getLogger(__name__)

LOCK_KEY = "handoff.push"  # one push at a time per warehouse (pg advisory lock on hashtext of this)


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
            state = self.states[row.dedupe_key]
            if state.acknowledged:
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
        state = self.states[row.dedupe_key]
        return state.update_done and not state.acknowledged

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
                          for contact_id in ids for r in by_contact[contact_id]]
                self.log.record("check_lifecycle", failed, self.states)
                continue
            terminal = []
            for contact_id in ids:
                stage = (found.get(contact_id) or {}).get("lifecyclestage") or ""
                for row in by_contact[contact_id]:
                    if contact_id in missing:
                        terminal.append((row, Outcome("parked", 207, None, f"contact {contact_id} not found in "
                                                                           "the CRM (deleted or archived)"), None))
                    elif stage in cfg.NO_DOWNGRADE_STAGES:
                        terminal.append((row, Outcome("skipped", 200, contact_id, f"the CRM has lifecyclestage="
                                                      f"{stage}: handoff never moves a contact backward (no update, "
                                                      "no task)"), None))
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
            chunk = [r for contact_id in ids for r in by_contact[contact_id]]
            # two SQLs of one contact in a run: the latest one's values (rows are ordered by sql_at)
            props = {contact_id: contact_properties(by_contact[contact_id][-1]) for contact_id in ids}
            push_ids = self.log.begin("update_contact", chunk, self.states)
            outcomes = self.crm.update_contacts(props)
            finished = []
            for row in chunk:
                outcome = outcomes[row.crm_contact_id or ""]
                finished.append((push_ids[row.dedupe_key], outcome))
                state = self.states[row.dedupe_key]
                if outcome.status == "succeeded":
                    state.update_done = True
                    self.sent_contacts[row.crm_contact_id or ""] = props[row.crm_contact_id or ""]
                    self.counts["contacts_updated"] += 1
                elif outcome.status in ("parked", "skipped"):
                    state.terminal = f"{outcome.status}: {outcome.reason}"
                    self.counts[outcome.status] += 1
                else:
                    state.failures["update_contact"] += 1
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
                state = self.states[row.dedupe_key]
                if row.dedupe_key in found:
                    state.task_id = found[row.dedupe_key]
                    self.acked_tasks[row.dedupe_key] = state.task_id
                    self.counts["tasks_recovered"] += 1
                    recovered.append((row, Outcome("succeeded", 200, state.task_id, "found by handoff_dedupe_key: an "
                                                   "earlier attempt created it but its answer was lost"), None))
                else:
                    state.last_task_status = "absent"
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
                state = self.states[row.dedupe_key]
                state.last_task_status = outcome.status
                if outcome.status == "succeeded":
                    state.task_id = outcome.object_id
                    self.acked_tasks[row.dedupe_key] = outcome.object_id or ""
                    self.counts["tasks_recovered" if outcome.http_status == 409 else "tasks_created"] += 1
                elif outcome.status in ("parked", "skipped"):
                    state.terminal = f"{outcome.status}: {outcome.reason}"
                    self.counts[outcome.status] += 1
                else:
                    state.failures["create_task"] += 1
            self.log.finish(finished)

    # -- 4. read back what this run wrote ----------------------------------------------------------------------------
    def read_back(self, rows: list[QueueRow]) -> None:
        entries = read_back_outcomes(self.crm, rows, self.sent_contacts, self.acked_tasks, self.config)
        self.counts["readback_checked"] += len(entries)
        self.counts["readback_mismatches"] += sum(1 for _, outcome, _ in entries if outcome.status == "mismatch")
        self.log.record("readback", entries)


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
