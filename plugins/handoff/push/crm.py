"""The CRM calls the push makes (HubSpot CRM v3 batch endpoints), each turned into per-row outcomes.

Every outcome is one of:
- ``succeeded``  the CRM says the row was written (``object_id`` set);
- ``failed``     the CRM definitely did not write it, and a later attempt may succeed (429 after retries,
                 an unknown row error, a whole-batch 4xx);
- ``parked``     the CRM definitely did not write it and never will as sent (deleted/archived contact,
                 invalid owner, a validation error on a value);
- ``skipped``    the write would move the contact's lifecycle stage backward;
- ``unknown``    no definite answer (timeout, dropped connection, 5xx, a 409 on another row of the batch):
                 the write may have happened; the next attempt looks it up before writing again.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from handoff.push.config import TASK_TO_CONTACT_ASSOCIATION
from handoff.push.transport import Answer, NoAnswer, Transport

CONTACTS = "/crm/v3/objects/contacts"
TASKS = "/crm/v3/objects/tasks"
DEDUPE_PROPERTY = "handoff_dedupe_key"
MERGED_IDS = "hs_merged_object_ids"  # ids merged into a record: a read by one of them answers the survivor

# Row error codes that no retry will fix: the row is parked with the CRM's message.
PERMANENT_CODES = frozenset({
    "INVALID_OWNER_ID", "INVALID_OPTION", "READ_ONLY_VALUE", "REQUIRED_FIELD", "INVALID_ASSOCIATION_TYPE",
    "INVALID_ASSOCIATION", "ASSOCIATION_TARGET_NOT_FOUND", "INVALID_DATE", "INVALID_INPUT",
})
_EXISTING_ID = re.compile(r"Existing ID: (\d+)")
_CONFLICT_VALUE = re.compile(r"with the value (['\"])(?P<value>.+?)\1 for the unique property")


@dataclass(frozen=True)
class Outcome:
    status: str
    http_status: int | None = None
    object_id: str | None = None
    reason: str | None = None


class CrmAuthError(RuntimeError):
    """401/403: the token is wrong or lacks a scope. Nothing later in the run can succeed."""


class CallFailed(RuntimeError):
    """A read or search that returned no usable answer."""

    def __init__(self, message: str, http_status: int | None) -> None:
        super().__init__(message)
        self.http_status = http_status


def _message(body: Any) -> str:
    if isinstance(body, dict):
        return str(body.get("message") or body)[:500]
    return str(body)[:500]


def whole_call_outcome(what: str, answer: Answer | None, error: NoAnswer | None) -> Outcome:
    """The outcome shared by every row of a call that did not come back 2xx/207."""
    if error is not None:
        return Outcome("unknown", None, None, f"{what}: {error}")
    assert answer is not None
    if answer.status in (401, 403):
        raise CrmAuthError(f"{what}: the CRM refused the token ({answer.status}: {_message(answer.body)}); check "
                           "the handoff_crm connection's password (private-app token) and its scopes")
    if answer.status >= 500:
        return Outcome("unknown", answer.status, None, f"{what}: {answer.status} {_message(answer.body)}")
    return Outcome("failed", answer.status, None, f"{what}: {answer.status} {_message(answer.body)}")


def classify_row_error(error: dict[str, Any], *, update: bool) -> Outcome:
    category = error.get("category") or ""
    message = _message(error)
    codes = [str(e.get("code")) for e in error.get("errors") or [] if isinstance(e, dict) and e.get("code")]
    if category == "OBJECT_NOT_FOUND":
        return Outcome("parked", 207, None, "contact not found in the CRM (deleted or archived)")
    if update and "INVALID_LIFECYCLE_STAGE" in codes:
        return Outcome("skipped", 207, None, "the CRM refused to move lifecyclestage backward (a later stage was "
                                             f"set since the check): {message}")
    if codes and all(code in PERMANENT_CODES for code in codes):
        return Outcome("parked", 207, None, f"{category} {','.join(codes)}: {message}")
    return Outcome("failed", 207, None, f"{category} {','.join(codes) or '-'}: {message}")


class Crm:
    """The push's CRM operations over one transport; ``calls`` counts requests by operation."""

    def __init__(self, transport: Transport) -> None:
        self.transport = transport
        self.calls: Counter[str] = Counter()

    def _post(self, op: str, path: str, body: dict[str, Any]) -> Answer:
        self.calls[op] += 1
        return self.transport.post(path, body)

    # -- reads ------------------------------------------------------------------------------------------------
    def read(self, path: str, ids: Sequence[str], properties: Sequence[str]) -> tuple[dict[str, dict], set[str]]:
        """Batch read (≤100 ids): ({id: properties}, ids the CRM does not have live). Raises CallFailed.

        An id merged into another record is answered by the survivor (under the survivor's id, naming the old one in
        ``hs_merged_object_ids``): it is found, under the id asked for, with the survivor's properties."""
        op = "read_" + path.rsplit("/", 1)[-1]
        try:
            answer = self._post(op, f"{path}/batch/read",
                                {"properties": list(dict.fromkeys([*properties, MERGED_IDS])),
                                 "inputs": [{"id": i} for i in ids]})
        except NoAnswer as exc:
            raise CallFailed(str(exc), None) from None
        if answer.status not in (200, 207):
            outcome = whole_call_outcome(f"batch read {path}", answer, None)
            raise CallFailed(outcome.reason or "", answer.status)
        found = {str(r["id"]): r.get("properties") or {} for r in answer.body.get("results") or []}
        asked = {str(i) for i in ids}
        for props in list(found.values()):
            for old in str(props.get(MERGED_IDS) or "").split(";"):
                if old in asked and old not in found:
                    found[old] = props
        missing = {str(i) for e in answer.body.get("errors") or [] if e.get("category") == "OBJECT_NOT_FOUND"
                   for i in (e.get("context") or {}).get("ids") or []}
        missing |= {i for i in ids if i not in found}
        return found, missing

    def search_tasks(self, keys: Sequence[str]) -> dict[str, str]:
        """Live tasks whose handoff_dedupe_key is one of ``keys`` (≤100): {key: task id}. Raises CallFailed."""
        found: dict[str, str] = {}
        after: str | None = None
        while True:
            body: dict[str, Any] = {
                "filterGroups": [{"filters": [{"propertyName": DEDUPE_PROPERTY, "operator": "IN",
                                               "values": list(keys)}]}],
                "properties": [DEDUPE_PROPERTY], "limit": 100}
            if after:
                body["after"] = after
            try:
                answer = self._post("search_tasks", f"{TASKS}/search", body)
            except NoAnswer as exc:
                raise CallFailed(str(exc), None) from None
            if answer.status != 200:
                outcome = whole_call_outcome("task search", answer, None)
                raise CallFailed(outcome.reason or "", answer.status)
            for task in answer.body.get("results") or []:
                key = (task.get("properties") or {}).get(DEDUPE_PROPERTY)
                if key:
                    found[key] = str(task["id"])
            after = ((answer.body.get("paging") or {}).get("next") or {}).get("after")
            if not after:
                return found

    # -- writes -----------------------------------------------------------------------------------------------
    def update_contacts(self, updates: dict[str, dict[str, str]]) -> dict[str, Outcome]:
        """Batch update (≤100 contacts): {contact id: outcome}."""
        # the trace id names the row in the answer even when the CRM answers it under a merged contact's survivor id
        inputs = [{"id": cid, "properties": props, "objectWriteTraceId": cid} for cid, props in updates.items()]
        try:
            answer: Answer | None = self._post("update_contacts", f"{CONTACTS}/batch/update", {"inputs": inputs})
            error = None
        except NoAnswer as exc:
            answer, error = None, exc
        if answer is None or answer.status not in (200, 207):
            outcome = whole_call_outcome("batch update contacts", answer, error)
            return dict.fromkeys(updates, outcome)
        out: dict[str, Outcome] = {}
        for result in answer.body.get("results") or []:
            out[str(result.get("objectWriteTraceId") or result["id"])] = Outcome("succeeded", answer.status,
                                                                                 str(result["id"]))
        for err in answer.body.get("errors") or []:
            outcome = classify_row_error(err, update=True)
            for cid in (err.get("context") or {}).get("ids") or []:
                out.setdefault(str(cid), outcome)
        for cid in updates:
            out.setdefault(cid, Outcome("failed", answer.status, None, "not in the batch update's answer"))
        return out

    def create_tasks(self, tasks: dict[str, tuple[str, dict[str, str]]]) -> dict[str, Outcome]:
        """Batch create (≤100): ``{dedupe key: (contact id, task properties)}`` -> {dedupe key: outcome}.

        A 409 names one key that already has a live task: that row is ``succeeded`` with the existing id, the
        others ``unknown`` (nothing was created by this request, but an earlier unanswered one may have).
        """
        inputs = [{"properties": props, "objectWriteTraceId": key,
                   "associations": [{"to": {"id": contact_id}, "types": [
                       {"associationCategory": "HUBSPOT_DEFINED",
                        "associationTypeId": TASK_TO_CONTACT_ASSOCIATION}]}]}
                  for key, (contact_id, props) in tasks.items()]
        try:
            answer: Answer | None = self._post("create_tasks", f"{TASKS}/batch/create", {"inputs": inputs})
            error = None
        except NoAnswer as exc:
            answer, error = None, exc
        if answer is not None and answer.status == 409:
            return self._conflict(tasks, answer)
        if answer is None or answer.status not in (200, 201, 207):
            outcome = whole_call_outcome("batch create tasks", answer, error)
            return dict.fromkeys(tasks, outcome)
        out: dict[str, Outcome] = {}
        for result in answer.body.get("results") or []:
            key = (result.get("properties") or {}).get(DEDUPE_PROPERTY) or result.get("objectWriteTraceId")
            if key in tasks:
                out[key] = Outcome("succeeded", answer.status, str(result["id"]))
        for err in answer.body.get("errors") or []:
            outcome = classify_row_error(err, update=False)
            for key in (err.get("context") or {}).get("objectWriteTraceId") or []:
                out.setdefault(str(key), outcome)
        for key in tasks:
            out.setdefault(key, Outcome("failed", answer.status, None, "not in the batch create's answer"))
        return out

    @staticmethod
    def _conflict(tasks: dict[str, Any], answer: Answer) -> dict[str, Outcome]:
        message = _message(answer.body)
        existing = _EXISTING_ID.search(message)
        value = _CONFLICT_VALUE.search(message)
        key = value["value"] if value else None
        out: dict[str, Outcome] = {}
        if key in tasks and existing:
            out[key] = Outcome("succeeded", 409, existing[1], "409: a task with this handoff_dedupe_key already "
                                                              "exists (created by an earlier attempt)")
        others = Outcome("unknown", 409, None, f"batch create rejected by a 409 on another row ({message[:200]}); "
                                               "will look the task up before creating it again")
        for k in tasks:
            out.setdefault(k, others)
        return out


def chunks(items: Iterable[Any], size: int) -> Iterable[list[Any]]:
    batch: list[Any] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch
