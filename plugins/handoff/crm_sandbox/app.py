"""Request handling for the CRM sandbox: routing, auth, limits, faults and the HubSpot CRM v3
endpoints. Transport-free: `SandboxApp.handle()` takes a request and returns a `Response`, so
the HTTP server in `server.py` stays a thin adapter."""

from __future__ import annotations

import hmac
import re
import sqlite3
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import orjson

from .limits import FaultDecision, FaultInjector, Faults, RateLimiter, Stats, limit
from .model import (
    ALWAYS_PROPERTIES,
    ASSOCIATION_TYPES,
    CREATEDATE_PROPERTY,
    DEFAULT_PROPERTIES,
    HUBSPOT_PROPERTIES,
    LASTMODIFIED_PROPERTY,
    LIFECYCLE_ORDER,
    MERGED_IDS_PROPERTY,
    READ_ONLY_PROPERTIES,
    REQUIRES_TIMESTAMP,
    UNIQUE_PROPERTIES,
    PropertyProblem,
    canonical_type,
    check_property_writes,
    custom_property_problems,
    iso_from_ms,
    singular,
    stage_dates,
    validation_message,
)
from .search import RESULT_CAP, SearchError, parse_search, record_matches, sort_key, updated_bounds
from .store import Record, Store

MAX_LIST_LIMIT = limit("list_page")
MAX_LIST_LIMIT_WITH_HISTORY = limit("list_page_with_history")
MAX_BATCH_INPUTS = limit("batch_inputs")
MAX_BATCH_READ_WITH_HISTORY = limit("batch_read_inputs_with_history")
MAX_ASSOCIATION_INPUTS = limit("association_batch_read_inputs")
MAX_OWNERS_LIMIT = limit("owners_page")
INTEGRATION_SOURCE = "INTEGRATION"

_OBJECTS = re.compile(r"^/crm/v3/objects/(?P<type>[^/]+)/?$")
_MERGE = re.compile(r"^/crm/v3/objects/(?P<type>[^/]+)/merge/?$")
_GDPR_DELETE = re.compile(r"^/crm/v3/objects/(?P<type>[^/]+)/gdpr-delete/?$")
_PROPERTIES = re.compile(r"^/crm/v3/properties/(?P<type>[^/]+)/?$")
_PROPERTY = re.compile(r"^/crm/v3/properties/(?P<type>[^/]+)/(?P<name>[^/]+)/?$")
# Served by HubSpot, not by the sandbox: answered 501 rather than mistaken for an object id (a 405).
_NOT_SERVED = re.compile(r"^/crm/v3/objects/(?P<type>[^/]+)/batch/[^/]+/?$")
_SEARCH = re.compile(r"^/crm/v3/objects/(?P<type>[^/]+)/search/?$")
_BATCH = re.compile(r"^/crm/v3/objects/(?P<type>[^/]+)/batch/(?P<op>read|update|create|archive)/?$")
_OBJECT = re.compile(r"^/crm/v3/objects/(?P<type>[^/]+)/(?P<id>[^/]+)/?$")
_OWNERS = re.compile(r"^/crm/v3/owners/?$")
_ASSOCIATIONS = re.compile(r"^/crm/v3/associations/(?P<from_type>[^/]+)/(?P<to_type>[^/]+)/batch/read/?$")
_OWNER = re.compile(r"^/crm/v3/owners/(?P<id>[^/]+)/?$")


@dataclass
class Response:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    drop: bool = False  # close the connection without answering (simulated timeout)


class ApiError(Exception):
    """An error answered with HubSpot's error body."""

    def __init__(self, status: int, category: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.category = category
        self.message = message
        self.extra = extra


def _json(status: int, payload: Any, headers: dict[str, str] | None = None) -> Response:
    return Response(status, orjson.dumps(payload), {"Content-Type": "application/json;charset=utf-8",
                                                     **(headers or {})})


def _error_body(category: str | None, message: str, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"status": "error", "message": message, "correlationId": str(uuid.uuid4())}
    if category:
        body["category"] = category
    body.update(extra)
    return body


def _row_error(category: str, message: str, context: dict[str, list[str]],
               errors: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """One entry of a 207 response's `errors` (the SDK's StandardError: every field present)."""
    return {"status": "error", "category": category, "message": message, "context": context, "links": {},
            "errors": errors or []}


def _problem_details(problems: list[PropertyProblem]) -> list[dict[str, Any]]:
    return [{"message": p.message, "code": p.code, "context": {"propertyName": [p.name]}} for p in problems]


def _list_param(query: dict[str, list[str]], name: str) -> list[str] | None:
    """HubSpot takes list params both comma-separated and repeated."""
    if name not in query:
        return None
    out: list[str] = []
    for value in query[name]:
        out.extend(v.strip() for v in value.split(",") if v.strip())
    return out


def _bool_param(query: dict[str, list[str]], name: str) -> bool:
    value = (query.get(name) or ["false"])[-1].strip().lower()
    if value in ("true", "1", "yes"):
        return True
    if value in ("false", "0", "no", ""):
        return False
    raise ApiError(400, "VALIDATION_ERROR", f"{name} must be true or false, got {value!r}.")


def _int_param(query: dict[str, list[str]], name: str, default: int, maximum: int) -> int:
    raw = (query.get(name) or [None])[-1]
    if raw in (None, ""):
        return default
    if not raw.isdigit() or int(raw) < 1:
        raise ApiError(400, "VALIDATION_ERROR", f"{name} must be a positive integer, got {raw!r}.")
    if int(raw) > maximum:
        raise ApiError(400, "VALIDATION_ERROR", f"{name} must be less than or equal to {maximum}, got {raw}.")
    return int(raw)


def _after_param(query: dict[str, list[str]]) -> int:
    raw = (query.get("after") or [""])[-1]
    if raw == "":
        return 0
    if not raw.isdigit():
        raise ApiError(400, "VALIDATION_ERROR", f"after must be a paging cursor returned by this API, got {raw!r}.")
    return int(raw)


def effective_properties(rec: Record) -> dict[str, Any]:
    """Stored properties plus the ones HubSpot derives from the record itself."""
    props = dict(rec.properties)
    props["hs_object_id"] = str(rec.id)
    props[LASTMODIFIED_PROPERTY[rec.object_type]] = iso_from_ms(rec.updated_ms)
    created = CREATEDATE_PROPERTY[rec.object_type]
    if not props.get(created):
        props[created] = iso_from_ms(rec.created_ms)
    return props


class SandboxApp:
    def __init__(self, store: Store, token: str, *, rate_limit: tuple[int, float] | None = (100, 10.0),
                 daily_limit: int | None = 250_000,
                 search_rate_limit: tuple[int, float] | None = (limit("search_requests_per_second"), 1.0),
                 faults: Faults | None = None,
                 clock: Callable[[], float] = time.time, sleep: Callable[[float], None] = time.sleep,
                 source_id: str = "handoff-crm-sandbox") -> None:
        if not token:
            raise ValueError("the CRM sandbox needs a non-empty token")
        self.store = store
        self.token = token
        self.clock = clock
        self.sleep = sleep
        self.source_id = source_id
        self.limiter = RateLimiter(rate_limit, daily_limit, self._clock)
        self.search_limiter = RateLimiter(search_rate_limit, None, self._clock, policy="SECONDLY", headers=False)
        self.faults = FaultInjector(faults)
        self.stats = Stats()

    def _clock(self) -> float:
        return self.clock()

    def now_ms(self) -> int:
        return int(self.clock() * 1000)

    # ------------------------------------------------------------------ entry point

    def handle(self, method: str, target: str, headers: dict[str, str], body: bytes) -> Response:
        parts = urlsplit(target)
        path = parts.path
        query = parse_qs(parts.query, keep_blank_values=True)
        base = f"http://{headers.get('host', 'localhost')}"
        if path.startswith("/__sandbox/"):
            try:
                return self._control(method, path, headers, body)
            except ApiError as exc:
                return _json(exc.status, _error_body(exc.category, exc.message, **exc.extra))
        response = self._api(method, path, query, headers, body, base=base)
        self.stats.record(method, path, 0 if response.drop else response.status)
        return response

    def _authorized(self, headers: dict[str, str]) -> str | None:
        auth = headers.get("authorization", "")
        scheme, _, credential = auth.partition(" ")
        if scheme.lower() != "bearer" or not credential.strip():
            raise ApiError(401, "INVALID_AUTHENTICATION",
                           "Authentication credentials not found. This API supports OAuth 2.0 authentication "
                           "and you can find more details at https://developers.hubspot.com/docs/methods/auth/"
                           "oauth-overview")
        credential = credential.strip()
        if not hmac.compare_digest(credential.encode(), self.token.encode()):
            raise ApiError(401, "INVALID_AUTHENTICATION",
                           "The access token provided is not valid. Check that it is the token of a private "
                           "app installed in this account.")
        return credential

    def _api(self, method: str, path: str, query: dict[str, list[str]], headers: dict[str, str], body: bytes, *,
             base: str) -> Response:
        decision = self.faults.decide()
        if decision.kind == "down":
            return _json(503, _error_body("SERVICE_UNAVAILABLE", "Service Unavailable (sandbox is down)."))
        rate_headers: dict[str, str] = {}
        try:
            token = self._authorized(headers)
            verdict = self.limiter.check(token or "")
            rate_headers = verdict.headers
            if not verdict.allowed:
                return self._rate_limited(verdict.policy or "TEN_SECONDLY_ROLLING", rate_headers)
            if _SEARCH.match(path):
                rate_headers = {}  # HubSpot's search answers carry no X-HubSpot-RateLimit headers
                if not self.search_limiter.check(token or "").allowed:
                    return self._rate_limited("SECONDLY", {})
            if decision.latency_s:
                self.sleep(decision.latency_s)
            if decision.kind == "rate_limit":
                return self._rate_limited("TEN_SECONDLY_ROLLING", {**rate_headers, "Retry-After": "1"})
            if decision.kind == "server_error":
                return _json(503, _error_body("SERVICE_UNAVAILABLE",
                                              "Service Unavailable (sandbox fault injection)."), rate_headers)
            timeout_mode = None
            if decision.kind == "timeout":
                self.sleep(self.faults.faults.timeout_seconds)
                timeout_mode = self.faults.faults.timeout_mode
                if timeout_mode == "drop":
                    return Response(504, drop=True)
            response = self._route(method, path, query, body, base=base, decision=decision)
            if timeout_mode == "lost":
                return Response(response.status, drop=True)
        except ApiError as exc:
            response = _json(exc.status, _error_body(exc.category, exc.message, **exc.extra))
        except sqlite3.Error as exc:
            response = _json(500, _error_body("INTERNAL_ERROR", f"Sandbox state error: {exc}"))
        response.headers.update(rate_headers)
        return response

    def _rate_limited(self, policy: str, headers: dict[str, str]) -> Response:
        period = policy.lower()
        group = "publicapi:crm-search" if policy == "SECONDLY" else "publicapi:private-app:sandbox"
        body = _error_body(None, f"You have reached your {period} limit.", errorType="RATE_LIMIT",
                           policyName=policy, groupName=group)
        return _json(429, body, headers)

    def _route(self, method: str, path: str, query: dict[str, list[str]], body: bytes, *, base: str,
               decision: FaultDecision) -> Response:
        if m := _SEARCH.match(path):
            self._allow(method, "POST")
            return self.search(self._type(m["type"]), self._body(body))
        if m := _BATCH.match(path):
            self._allow(method, "POST")
            object_type, op = self._type(m["type"]), m["op"]
            payload = self._body(body)
            if op == "read":
                return self.batch_read(object_type, payload, _bool_param(query, "archived"))
            if op == "update":
                return self.batch_update(object_type, payload, decision)
            if op == "create":
                return self.batch_create(object_type, payload, decision)
            return self.batch_archive(object_type, payload)
        if m := _MERGE.match(path):
            self._allow(method, "POST")
            return self.merge(self._type(m["type"]), self._body(body))
        if m := _GDPR_DELETE.match(path):
            self._allow(method, "POST")
            return self.gdpr_delete(self._type(m["type"]), self._body(body))
        if m := _NOT_SERVED.match(path):
            raise ApiError(501, "NOT_IMPLEMENTED", f"HubSpot serves {method} {path}; the sandbox does not (yet).")
        if m := _PROPERTIES.match(path):
            object_type = self._type(m["type"])
            if method == "GET":
                return self.list_properties(object_type)
            self._allow(method, "POST")
            return self.create_property(object_type, self._body(body))
        if m := _PROPERTY.match(path):
            self._allow(method, "GET")
            return self.get_property(self._type(m["type"]), m["name"])
        if m := _ASSOCIATIONS.match(path):
            self._allow(method, "POST")
            return self.read_associations(self._type(m["from_type"]), self._type(m["to_type"]), self._body(body))
        if m := _OBJECTS.match(path):
            object_type = self._type(m["type"])
            if method == "GET":
                return self.list_objects(object_type, query, base)
            self._allow(method, "POST")
            return self.create(object_type, self._body(body))
        if m := _OBJECT.match(path):
            object_type = self._type(m["type"])
            if method == "GET":
                return self.get_object(object_type, m["id"], query)
            if method == "PATCH":
                return self.update(object_type, m["id"], query, self._body(body))
            self._allow(method, "DELETE")
            return self.archive(object_type, m["id"])
        if _OWNERS.match(path):
            self._allow(method, "GET")
            return self.list_owners(query, base)
        if m := _OWNER.match(path):
            self._allow(method, "GET")
            return self.get_owner(m["id"], query)
        raise ApiError(404, "OBJECT_NOT_FOUND", f"Unable to find an endpoint for {method} {path}.")

    @staticmethod
    def _allow(method: str, allowed: str) -> None:
        if method != allowed:
            raise ApiError(405, "VALIDATION_ERROR", f"Method {method} is not allowed here; use {allowed}.")

    @staticmethod
    def _type(name: str) -> str:
        object_type = canonical_type(name)
        if object_type is None:
            raise ApiError(400, "VALIDATION_ERROR", f"Unable to infer object type from: {name}")
        return object_type

    @staticmethod
    def _body(body: bytes) -> Any:
        try:
            return orjson.loads(body or b"")
        except orjson.JSONDecodeError as exc:
            raise ApiError(400, "VALIDATION_ERROR", f"Invalid input JSON: {exc}") from None

    # ------------------------------------------------------------------ rendering

    def _render(self, conn: sqlite3.Connection, records: list[Record], properties: list[str] | None,
                history: list[str] | None = None, assoc_types: list[str] | None = None, *,
                trace_ids: dict[int, str] | None = None) -> list[dict[str, Any]]:
        if not records:
            return []
        object_type = records[0].object_type
        known = self._property_type(conn, object_type)
        # HubSpot leaves out a requested property the object type does not have (and answers null for one unset)
        wanted = [name for name in dict.fromkeys([*(properties if properties is not None else
                                                    DEFAULT_PROPERTIES[object_type]), *ALWAYS_PROPERTIES[object_type]])
                  if known(name) is not None]
        ids = [r.id for r in records]
        hist = self.store.history(conn, object_type, ids, history) if history else {}
        assocs = self.store.associations(conn, object_type, ids, assoc_types) if assoc_types else {}
        out = []
        for rec in records:
            props = effective_properties(rec)
            obj: dict[str, Any] = {
                "id": str(rec.id),
                "properties": {name: props.get(name) for name in wanted},
                "createdAt": iso_from_ms(rec.created_ms),
                "updatedAt": iso_from_ms(rec.updated_ms),
                "archived": rec.archived,
            }
            if rec.archived and rec.archived_ms is not None:
                obj["archivedAt"] = iso_from_ms(rec.archived_ms)
            if history:
                obj["propertiesWithHistory"] = {
                    prop: [{"value": e["value"], "timestamp": iso_from_ms(e["ts_ms"]), "sourceType": e["sourceType"],
                            "sourceId": e["sourceId"], "updatedByUserId": e["updatedByUserId"]} for e in entries]
                    for prop, entries in hist[rec.id].items()}
            linked = assocs.get(rec.id) if assoc_types else None
            if linked:
                obj["associations"] = {to_type: {"results": [{"id": str(i), "type": label} for i, label in items]}
                                       for to_type, items in linked.items()}
            if trace_ids and rec.id in trace_ids:
                obj["objectWriteTraceId"] = trace_ids[rec.id]
            out.append(obj)
        return out

    # ------------------------------------------------------------------ reads

    def list_objects(self, object_type: str, query: dict[str, list[str]], base: str) -> Response:
        history = _list_param(query, "propertiesWithHistory")
        limit = _int_param(query, "limit", 10, MAX_LIST_LIMIT)
        if history:
            limit = min(limit, MAX_LIST_LIMIT_WITH_HISTORY)
        after = _after_param(query)
        archived = _bool_param(query, "archived")
        with self.store.read() as conn:
            records = self.store.page(conn, object_type, after, limit + 1, archived)
            results = self._render(conn, records[:limit], _list_param(query, "properties"), history,
                                   self._assoc_types(query))
        payload: dict[str, Any] = {"results": results}
        if len(records) > limit:
            next_after = str(records[limit].id)
            link_query = "&".join(f"{quote(k)}={quote(v)}" for k, vs in query.items() if k != "after" for v in vs)
            link = f"{base}/crm/v3/objects/{object_type}?{link_query + '&' if link_query else ''}after={next_after}"
            payload["paging"] = {"next": {"after": next_after, "link": link}}
        return _json(200, payload)

    @staticmethod
    def _assoc_types(query: dict[str, list[str]]) -> list[str] | None:
        names = _list_param(query, "associations")
        if not names:
            return None
        types = []
        for name in names:
            object_type = canonical_type(name)
            if object_type is None:
                raise ApiError(400, "VALIDATION_ERROR", f"Unable to infer object type from: {name}")
            types.append(object_type)
        return types

    def _lookup(self, conn: sqlite3.Connection, object_type: str, key: str, id_property: str | None,
                archived: bool = False) -> Record | None:
        if id_property in (None, "", "hs_object_id"):
            if not key.isdigit():
                return None
            rec = self.store.get(conn, object_type, int(key))
            if rec is None and (survivor := self.store.merged_into(conn, object_type, int(key))) is not None:
                rec = self.store.get(conn, object_type, survivor)  # a merged-away id reads as the survivor
        elif id_property == "email" and object_type == "contacts":
            rec = self.store.get_by_email(conn, key, archived)
        else:
            raise ApiError(400, "VALIDATION_ERROR",
                           f"idProperty {id_property!r} is not a unique identifier property of {object_type}.")
        if rec is None or rec.archived != archived:
            return None
        return rec

    def get_object(self, object_type: str, key: str, query: dict[str, list[str]]) -> Response:
        archived = _bool_param(query, "archived")
        id_property = (query.get("idProperty") or [None])[-1]
        with self.store.read() as conn:
            rec = self._lookup(conn, object_type, key, id_property, archived)
            if rec is None:
                raise ApiError(404, "OBJECT_NOT_FOUND", "resource not found")
            result = self._render(conn, [rec], _list_param(query, "properties"),
                                  _list_param(query, "propertiesWithHistory"), self._assoc_types(query))[0]
        return _json(200, result)

    def search(self, object_type: str, body: Any) -> Response:
        try:
            request = parse_search(object_type, body)
        except SearchError as exc:
            raise ApiError(400, "VALIDATION_ERROR", str(exc)) from None
        if request.offset >= RESULT_CAP:
            raise ApiError(400, "VALIDATION_ERROR",
                           f"There was a problem with the request: the search API returns at most {RESULT_CAP} "
                           f"results per query; after={request.offset} is beyond that. Narrow the filters "
                           "(e.g. a smaller lastmodifieddate window) instead of paging further.",
                           subCategory="SEARCH_RESULT_LIMIT_EXCEEDED")
        low, high = updated_bounds(request, LASTMODIFIED_PROPERTY[object_type])
        with self.store.read() as conn:
            matched: list[tuple[dict[str, Any], Record]] = []
            for rec in self.store.scan(conn, object_type, low, high):
                props = effective_properties(rec)
                if record_matches(props, request):
                    matched.append((props, rec))
            if request.sorts:
                sort = request.sorts[0]
                key = sort_key(sort)
                filled = [m for m in matched if m[0].get(sort.property_name) not in (None, "")]
                empty = [m for m in matched if m[0].get(sort.property_name) in (None, "")]
                filled.sort(key=lambda m: key(m[0]), reverse=sort.descending)
                matched = filled + empty
            total = len(matched)
            end = min(request.offset + request.limit, RESULT_CAP)
            window = matched[request.offset:end]
            results = self._render(conn, [rec for _, rec in window], list(request.properties), None, None)
        payload: dict[str, Any] = {"total": total, "results": results}
        if request.offset + len(window) < total and window:
            payload["paging"] = {"next": {"after": str(request.offset + len(window))}}
        return _json(200, payload)

    def batch_read(self, object_type: str, body: Any, archived: bool) -> Response:
        inputs = self._inputs(body)
        if body.get("propertiesWithHistory") and len(inputs) > MAX_BATCH_READ_WITH_HISTORY:
            raise ApiError(400, "VALIDATION_ERROR",
                           f"Batch read with propertiesWithHistory must not have more than "
                           f"{MAX_BATCH_READ_WITH_HISTORY} inputs; got {len(inputs)}.",
                           context={"maxInputs": [str(MAX_BATCH_READ_WITH_HISTORY)], "inputs": [str(len(inputs))]})
        started = self.now_ms()
        id_property = body.get("idProperty")
        found: list[Record] = []
        missing: list[str] = []
        with self.store.read() as conn:
            for item in inputs:
                key = str((item or {}).get("id", ""))
                rec = self._lookup(conn, object_type, key, id_property, archived)
                if rec is None:
                    missing.append(key)
                elif rec not in found:
                    found.append(rec)
            results = self._render(conn, found, body.get("properties") or None,
                                   body.get("propertiesWithHistory") or None, None)
        errors = [self._not_found(object_type, missing)] if missing else []
        return self._batch_response(results, errors, started, success_status=200)

    def read_associations(self, from_type: str, to_type: str, body: Any) -> Response:
        """``POST /crm/v3/associations/{from}/{to}/batch/read``: each input's live associated records with the
        association type (``deal_to_contact``), the shape the list endpoint's ``associations`` carry. An input with
        none is a 207 error, ``NO_ASSOCIATIONS_FOUND``, as HubSpot answers it."""
        inputs = self._inputs(body, MAX_ASSOCIATION_INPUTS)
        started = self.now_ms()
        keys = list(dict.fromkeys(str((item or {}).get("id", "")) for item in inputs))
        ids = [int(k) for k in keys if k.isdigit()]
        with self.store.read() as conn:
            linked = self.store.associations(conn, from_type, ids, [to_type])
        results, errors = [], []
        for key in keys:
            items = linked.get(int(key), {}).get(to_type) if key.isdigit() else None
            if items:
                results.append({"from": {"id": key}, "to": [{"id": str(i), "type": label} for i, label in items]})
            else:
                error = _row_error("OBJECT_NOT_FOUND", f"No {to_type} is associated with {from_type} {key}.",
                                   {"fromObjectId": [key]})
                errors.append({**error, "subCategory": "crm.associations.NO_ASSOCIATIONS_FOUND"})
        return self._batch_response(results, errors, started, success_status=200)

    # ------------------------------------------------------------------ writes

    @staticmethod
    def _inputs(body: Any, maximum: int = MAX_BATCH_INPUTS) -> list[Any]:
        if not isinstance(body, dict) or not isinstance(body.get("inputs"), list):
            raise ApiError(400, "VALIDATION_ERROR", "Invalid input JSON: expected an object with an inputs list.")
        inputs = body["inputs"]
        if len(inputs) > maximum:
            raise ApiError(400, "VALIDATION_ERROR",
                           f"Batch input must not have more than {maximum} inputs; got {len(inputs)}.",
                           context={"maxInputs": [str(maximum)], "inputs": [str(len(inputs))]})
        return inputs

    @staticmethod
    def _not_found(object_type: str, ids: list[str]) -> dict[str, Any]:
        kind = object_type.rstrip("s").upper() if object_type != "companies" else "COMPANY"
        return _row_error("OBJECT_NOT_FOUND", f"Could not get some {kind} objects, they may be deleted or not "
                          "exist. Check that ids are valid.", {"ids": ids})

    def _batch_response(self, results: list[dict[str, Any]], errors: list[dict[str, Any]], started: int,
                        success_status: int) -> Response:
        payload: dict[str, Any] = {"status": "COMPLETE", "results": results,
                                   "startedAt": iso_from_ms(started), "completedAt": iso_from_ms(self.now_ms())}
        if errors:
            payload["numErrors"] = len(errors)
            payload["errors"] = errors
            return _json(207, payload)
        return _json(success_status, payload)

    def _property_type(self, conn: sqlite3.Connection, object_type: str) -> Callable[[str], str | None]:
        """name -> type for the properties the object type has (HubSpot's defaults and the ones created)."""
        types = dict(HUBSPOT_PROPERTIES[object_type])
        types.update({name: str(d.get("type") or "string")
                      for name, d in self.store.property_definitions(conn, object_type).items()})
        return types.get

    @staticmethod
    def _unknown_properties(object_type: str, rows: list[Any]) -> None:
        """HubSpot refuses a whole batch (400, nothing written) when a row sets a property that does not exist."""
        unknown = sorted({p.name for problems in rows for p in problems if p.code == "PROPERTY_DOESNT_EXIST"})
        if unknown:
            problems = [PropertyProblem(n, "PROPERTY_DOESNT_EXIST", f'Property "{n}" does not exist') for n in unknown]
            raise ApiError(400, "VALIDATION_ERROR", validation_message(problems), errors=_problem_details(problems))

    def _owner_exists(self, conn: sqlite3.Connection) -> Callable[[str], bool]:
        return lambda owner_id: self.store.owner_is_active(conn, owner_id)

    def _apply(self, conn: sqlite3.Connection, rec: Record, values: dict[str, str], now: int,
               creating: bool = False) -> None:
        if rec.object_type == "contacts" and values.get("lifecyclestage"):
            values = {**stage_dates(rec.properties, values["lifecyclestage"], iso_from_ms(now)), **values}
        for name, value in values.items():
            if creating or rec.properties.get(name) != value:
                self.store.append_history(conn, rec.object_type, rec.id, name, value=value, ts_ms=now,
                                          source_type=INTEGRATION_SOURCE, source_id=self.source_id)
            rec.properties[name] = value
        rec.updated_ms = now
        rec.properties[LASTMODIFIED_PROPERTY[rec.object_type]] = iso_from_ms(now)
        self.store.save(conn, rec)

    def _unique_conflict(self, conn: sqlite3.Connection, object_type: str, values: dict[str, str],
                         own_id: int | None) -> ApiError | None:
        prop = UNIQUE_PROPERTIES.get(object_type)
        value = values.get(prop) if prop else None
        if not value:
            return None
        existing = self.store.find_unique(conn, object_type, value)
        if existing is None or existing == own_id:
            return None
        return self._conflict(object_type, prop or "", value, existing)

    @staticmethod
    def _conflict(object_type: str, prop: str, value: str, existing: int | None) -> ApiError:
        suffix = f" Existing ID: {existing}" if existing is not None else ""
        return ApiError(409, "CONFLICT", f"A {object_type[:-1]} with the value {value!r} for the unique property "
                        f"{prop} already exists.{suffix}",
                        context={"propertyName": [prop], **({"id": [str(existing)]} if existing else {})})

    def _written(self, conn: sqlite3.Connection, rec: Record, written: list[str],
                 trace_ids: dict[int, str] | None) -> dict[str, Any]:
        return self._render(conn, [rec], written, trace_ids=trace_ids)[0]

    def update(self, object_type: str, key: str, query: dict[str, list[str]], body: Any) -> Response:
        props = body.get("properties") if isinstance(body, dict) else None
        if not isinstance(props, dict):
            raise ApiError(400, "VALIDATION_ERROR", "Invalid input JSON: expected {\"properties\": {...}}.")
        id_property = (query.get("idProperty") or [None])[-1]
        with self.store.write() as conn:
            rec = self._lookup(conn, object_type, key, id_property)
            if rec is None:
                raise ApiError(404, "OBJECT_NOT_FOUND", "resource not found")
            check = check_property_writes(object_type, props, rec.properties, self._owner_exists(conn),
                                          self._property_type(conn, object_type))
            if check.problems:
                raise ApiError(400, "VALIDATION_ERROR", validation_message(check.problems),
                               errors=_problem_details(check.problems))
            if conflict := self._unique_conflict(conn, object_type, check.values, rec.id):
                raise conflict
            self._apply(conn, rec, check.values, self.now_ms())
            result = self._written(conn, rec, list(check.values), None)
        return _json(200, result)

    def batch_update(self, object_type: str, body: Any, decision: FaultDecision) -> Response:
        inputs = self._inputs(body)
        started = self.now_ms()
        keys = [str((item or {}).get("id", "")) for item in inputs]
        duplicates = sorted({k for k in keys if keys.count(k) > 1})
        if duplicates:
            raise ApiError(400, "VALIDATION_ERROR", f"Duplicate IDs found in batch input: {duplicates}. IDs must "
                           "be unique", context={"ids": duplicates})
        results: list[dict[str, Any]] = []
        errors: list[dict[str, Any]] = []
        missing: list[str] = []
        with self.store.write() as conn:
            now = self.now_ms()
            known = self._property_type(conn, object_type)
            self._unknown_properties(object_type, [
                check_property_writes(object_type, item["properties"], {}, lambda _: True, known).problems
                for item in inputs if isinstance(item, dict) and isinstance(item.get("properties"), dict)])
            for item, key in zip(inputs, keys, strict=True):
                props = (item or {}).get("properties")
                trace = (item or {}).get("objectWriteTraceId")
                context = {"ids": [key], **({"objectWriteTraceId": [str(trace)]} if trace else {})}
                if not isinstance(props, dict):
                    errors.append(_row_error("VALIDATION_ERROR", "properties must be an object", context))
                    continue
                rec = self._lookup(conn, object_type, key, (item or {}).get("idProperty"))
                if rec is None:
                    missing.append(key)
                    continue
                check = check_property_writes(object_type, props, rec.properties, self._owner_exists(conn), known)
                if not check.problems and decision.rng.random() < self.faults.faults.row_error_rate:
                    check.problems.append(PropertyProblem("*", "SANDBOX_INJECTED_FAULT",
                                                          "Row rejected by sandbox fault injection."))
                if check.problems:
                    errors.append(_row_error("VALIDATION_ERROR", validation_message(check.problems), context,
                                             _problem_details(check.problems)))
                    continue
                if conflict := self._unique_conflict(conn, object_type, check.values, rec.id):
                    errors.append(_row_error("CONFLICT", conflict.message, context))
                    continue
                self._apply(conn, rec, check.values, now)
                results.append(self._written(conn, rec, list(check.values),
                                             {rec.id: str(trace)} if trace else None))
        if missing:
            errors.insert(0, self._not_found(object_type, missing))
        return self._batch_response(results, errors, started, success_status=200)

    def _check_create(self, conn: sqlite3.Connection, object_type: str, item: Any
                      ) -> tuple[dict[str, str], list[tuple[str, int, str]], list[PropertyProblem]]:
        props = (item or {}).get("properties")
        if not isinstance(props, dict):
            return {}, [], [PropertyProblem("properties", "INVALID_INPUT", "properties must be an object")]
        check = check_property_writes(object_type, props, None, self._owner_exists(conn),
                                      self._property_type(conn, object_type))
        if object_type in REQUIRES_TIMESTAMP and not check.values.get("hs_timestamp") and \
                not any(p.name == "hs_timestamp" for p in check.problems):
            check.problems.append(PropertyProblem("hs_timestamp", "REQUIRED_FIELD",
                                                  f"hs_timestamp is required to create {object_type}."))
        links: list[tuple[str, int, str]] = []
        for n, assoc in enumerate((item or {}).get("associations") or []):
            to_id = str(((assoc or {}).get("to") or {}).get("id", ""))
            types = (assoc or {}).get("types") or []
            if not to_id.isdigit() or not types:
                check.problems.append(PropertyProblem(f"associations[{n}]", "INVALID_ASSOCIATION",
                                                      "an association needs to.id and at least one type"))
                continue
            for spec in types:
                category = (spec or {}).get("associationCategory")
                type_id = (spec or {}).get("associationTypeId")
                target = ASSOCIATION_TYPES.get((object_type, type_id)) if category == "HUBSPOT_DEFINED" else None
                if target is None:
                    check.problems.append(PropertyProblem(
                        f"associations[{n}]", "INVALID_ASSOCIATION_TYPE",
                        f"{category} association type {type_id} is not valid from {object_type}."))
                    continue
                to_type, label = target
                target_rec = self.store.get(conn, to_type, int(to_id))
                if target_rec is None and (survivor := self.store.merged_into(conn, to_type, int(to_id))):
                    target_rec = self.store.get(conn, to_type, survivor)  # a merged-away id stands for the survivor
                    to_id = str(survivor)
                if target_rec is None or target_rec.archived:
                    check.problems.append(PropertyProblem(
                        f"associations[{n}]", "ASSOCIATION_TARGET_NOT_FOUND",
                        f"{to_type} {to_id} does not exist or is archived; cannot associate."))
                    continue
                links.append((to_type, int(to_id), label))
        return check.values, links, check.problems

    def _insert(self, conn: sqlite3.Connection, object_type: str, values: dict[str, str],
                links: list[tuple[str, int, str]], now: int) -> Record:
        rec = Record(object_type, self.store.next_id(conn), {}, now, now)
        created = CREATEDATE_PROPERTY[object_type]
        values = {created: iso_from_ms(now), **values}
        self._apply(conn, rec, values, now, creating=True)
        for to_type, to_id, label in links:
            self.store.associate(conn, object_type, rec.id, to_type=to_type, to_id=to_id, label=label)
        return rec

    def create(self, object_type: str, body: Any) -> Response:
        if not isinstance(body, dict):
            raise ApiError(400, "VALIDATION_ERROR", "Invalid input JSON: expected {\"properties\": {...}}.")
        with self.store.write() as conn:
            values, links, problems = self._check_create(conn, object_type, body)
            if problems:
                raise ApiError(400, "VALIDATION_ERROR", validation_message(problems),
                               errors=_problem_details(problems))
            if conflict := self._unique_conflict(conn, object_type, values, None):
                raise conflict
            rec = self._insert(conn, object_type, values, links, self.now_ms())
            result = self._render(conn, [rec], list(rec.properties), None, None)[0]
        return _json(201, result)

    def batch_create(self, object_type: str, body: Any, decision: FaultDecision) -> Response:
        inputs = self._inputs(body)
        started = self.now_ms()
        results: list[dict[str, Any]] = []
        errors: list[dict[str, Any]] = []
        with self.store.write() as conn:
            checked = [self._check_create(conn, object_type, item) for item in inputs]
            self._unknown_properties(object_type, [problems for _, _, problems in checked])
            # A unique-value clash fails the whole batch (409, nothing created), as HubSpot does.
            prop = UNIQUE_PROPERTIES.get(object_type)
            seen: dict[str, int] = {}
            for values, _, problems in checked:
                value = values.get(prop) if prop else None
                if not value or problems:
                    continue
                if value in seen:
                    raise self._conflict(object_type, prop or "", value, None)
                seen[value] = 1
                if conflict := self._unique_conflict(conn, object_type, values, None):
                    raise conflict
            now = self.now_ms()
            for item, (values, links, row_problems) in zip(inputs, checked, strict=True):
                trace = (item or {}).get("objectWriteTraceId")
                context = {"objectWriteTraceId": [str(trace)]} if trace else {}
                problems = list(row_problems)
                if not problems and decision.rng.random() < self.faults.faults.row_error_rate:
                    problems.append(PropertyProblem("*", "SANDBOX_INJECTED_FAULT",
                                                    "Row rejected by sandbox fault injection."))
                if problems:
                    errors.append(_row_error("VALIDATION_ERROR", validation_message(problems), context,
                                             _problem_details(problems)))
                    continue
                rec = self._insert(conn, object_type, values, links, now)
                results.append(self._render(conn, [rec], list(rec.properties),
                                            trace_ids={rec.id: str(trace)} if trace else None)[0])
        return self._batch_response(results, errors, started, success_status=201)

    def archive(self, object_type: str, key: str) -> Response:
        with self.store.write() as conn:
            self._archive_one(conn, object_type, key, self.now_ms())
        return Response(204)

    def _archive_one(self, conn: sqlite3.Connection, object_type: str, key: str, now: int) -> None:
        rec = self.store.get(conn, object_type, int(key)) if key.isdigit() else None
        if rec is None or rec.archived:
            return  # HubSpot answers 204 for an unknown or already archived id too
        rec.archived = True
        rec.archived_ms = now
        rec.updated_ms = now
        self.store.save(conn, rec)

    def batch_archive(self, object_type: str, body: Any) -> Response:
        inputs = self._inputs(body)
        with self.store.write() as conn:
            now = self.now_ms()
            for item in inputs:
                self._archive_one(conn, object_type, str((item or {}).get("id", "")), now)
        return Response(204)

    # ------------------------------------------------------------------ merge, GDPR delete

    def merge(self, object_type: str, body: Any) -> Response:
        """``POST /crm/v3/objects/{type}/merge`` ``{"primaryObjectId", "objectIdToMerge"}``: the primary keeps its id
        and its values, takes the other's where its own are empty, the furthest lifecycle stage and the earliest
        stage dates; the other's id joins ``hs_merged_object_ids`` and from then on reads as the primary."""
        if not isinstance(body, dict):
            raise ApiError(400, "VALIDATION_ERROR", "Invalid input JSON: expected {primaryObjectId, objectIdToMerge}.")
        primary_key, other_key = str(body.get("primaryObjectId") or ""), str(body.get("objectIdToMerge") or "")
        if not primary_key.isdigit() or not other_key.isdigit():
            raise ApiError(400, "VALIDATION_ERROR", "primaryObjectId and objectIdToMerge must be object ids.")
        if primary_key == other_key:
            raise ApiError(400, "VALIDATION_ERROR", "Cannot merge an object with itself.")
        with self.store.write() as conn:
            primary = self.store.get(conn, object_type, int(primary_key))
            other = self.store.get(conn, object_type, int(other_key))
            missing = [k for k, r in ((primary_key, primary), (other_key, other)) if r is None or r.archived]
            if missing or primary is None or other is None:
                raise ApiError(404, "OBJECT_NOT_FOUND", f"Could not find {object_type} {', '.join(missing)} to merge.")
            values: dict[str, str] = {}
            for name, value in other.properties.items():
                mine = primary.properties.get(name)
                if name.startswith(("hs_lifecyclestage_", "hs_v2_date_entered_")):  # stage dates (some read-only)
                    if value:
                        values[name] = min(mine, value) if mine else value  # ISO-8601 with Z: text order is time
                    continue
                if name in READ_ONLY_PROPERTIES or name in (LASTMODIFIED_PROPERTY[object_type], MERGED_IDS_PROPERTY):
                    continue
                if value and not mine:
                    values[name] = value
            stages = [primary.properties.get("lifecyclestage"), other.properties.get("lifecyclestage")]
            ordered = [st for st in stages if st in LIFECYCLE_ORDER]
            if ordered:
                values["lifecyclestage"] = max(ordered, key=LIFECYCLE_ORDER.index)
            if other.properties.get("email") and primary.properties.get("email") and object_type == "contacts":
                extra = [e for e in str(primary.properties.get("hs_additional_emails") or "").split(";") if e]
                values["hs_additional_emails"] = ";".join(dict.fromkeys([*extra, other.properties["email"]]))
            merged = [i for i in str(primary.properties.get(MERGED_IDS_PROPERTY) or "").split(";") if i]
            merged += [other_key, *(i for i in str(other.properties.get(MERGED_IDS_PROPERTY) or "").split(";") if i)]
            values[MERGED_IDS_PROPERTY] = ";".join(dict.fromkeys(merged))
            now = self.now_ms()
            self.store.move_associations(conn, object_type, other.id, primary.id)
            self.store.delete(conn, object_type, other.id)
            self.store.record_merge(conn, object_type, other.id, primary.id)
            self._apply(conn, primary, {k: v for k, v in values.items() if primary.properties.get(k) != v}, now)
            result = self._render(conn, [primary], None)[0]
        return _json(200, result)

    def gdpr_delete(self, object_type: str, body: Any) -> Response:
        """``POST /crm/v3/objects/contacts/gdpr-delete`` ``{"objectId", "idProperty"?}``: gone for good, 204."""
        if object_type != "contacts":
            raise ApiError(400, "VALIDATION_ERROR", "GDPR delete is for contacts only.")
        key = str((body or {}).get("objectId") or "") if isinstance(body, dict) else ""
        with self.store.write() as conn:
            rec = self._lookup(conn, object_type, key, (body or {}).get("idProperty"))
            if rec is None:
                raise ApiError(404, "OBJECT_NOT_FOUND", "resource not found")
            self.store.delete(conn, object_type, rec.id)
        return Response(204)

    # ------------------------------------------------------------------ properties

    @staticmethod
    def _property_out(object_type: str, definition: dict[str, Any], hubspot_defined: bool) -> dict[str, Any]:
        return {"name": definition["name"], "label": definition.get("label") or definition["name"],
                "type": definition.get("type") or "string", "fieldType": definition.get("fieldType") or "text",
                "description": definition.get("description") or "",
                "groupName": definition.get("groupName") or f"{singular(object_type)}information",
                "options": definition.get("options") or [], "hasUniqueValue": bool(definition.get("hasUniqueValue")),
                "hubspotDefined": hubspot_defined, "formField": bool(definition.get("formField")),
                "calculated": False, "externalOptions": False, "hidden": False, "archived": False,
                "modificationMetadata": {"archivable": not hubspot_defined, "readOnlyDefinition": hubspot_defined,
                                         "readOnlyValue": definition["name"] in READ_ONLY_PROPERTIES},
                **({"createdAt": definition["createdAt"]} if definition.get("createdAt") else {})}

    def _all_properties(self, conn: sqlite3.Connection, object_type: str) -> dict[str, dict[str, Any]]:
        out = {name: self._property_out(object_type, {"name": name, "type": kind,
                                                      "fieldType": {"number": "number", "datetime": "date",
                                                                    "enumeration": "select"}.get(kind, "text")}, True)
               for name, kind in HUBSPOT_PROPERTIES[object_type].items()}
        for name, definition in self.store.property_definitions(conn, object_type).items():
            out[name] = self._property_out(object_type, definition, False)
        return out

    def list_properties(self, object_type: str) -> Response:
        with self.store.read() as conn:
            return _json(200, {"results": list(self._all_properties(conn, object_type).values())})

    def get_property(self, object_type: str, name: str) -> Response:
        with self.store.read() as conn:
            found = self._all_properties(conn, object_type).get(name)
        if found is None:
            raise ApiError(404, "OBJECT_NOT_FOUND", f"Unable to find property {name} for object type {object_type}.")
        return _json(200, found)

    def create_property(self, object_type: str, body: Any) -> Response:
        """``POST /crm/v3/properties/{objectType}``: a custom property, 201; 409 when the name is taken."""
        problems = custom_property_problems(body, object_type)
        if problems:
            raise ApiError(400, "VALIDATION_ERROR", "Property definition is not valid: " + "; ".join(problems))
        with self.store.write() as conn:
            if body["name"] in self.store.property_definitions(conn, object_type):
                raise ApiError(409, "OBJECT_ALREADY_EXISTS", f"A property named '{body['name']}' already exists.")
            definition = {**body, "createdAt": iso_from_ms(self.now_ms())}
            self.store.save_property(conn, object_type, definition)
        return _json(201, self._property_out(object_type, definition, False))

    # ------------------------------------------------------------------ owners

    def list_owners(self, query: dict[str, list[str]], base: str) -> Response:
        limit = _int_param(query, "limit", 100, MAX_OWNERS_LIMIT)
        after = _after_param(query)
        email = (query.get("email") or [None])[-1]
        with self.store.read() as conn:
            owners = self.store.owners_page(conn, after, limit + 1, _bool_param(query, "archived"), email)
        payload: dict[str, Any] = {"results": owners[:limit]}
        if len(owners) > limit:
            next_after = str(owners[limit]["id"])
            payload["paging"] = {"next": {"after": next_after, "link": f"{base}/crm/v3/owners/?after={next_after}"}}
        return _json(200, payload)

    def get_owner(self, key: str, query: dict[str, list[str]]) -> Response:
        id_property = (query.get("idProperty") or ["id"])[-1]
        if id_property not in ("id", "userId"):
            raise ApiError(400, "VALIDATION_ERROR", f"idProperty must be id or userId, got {id_property!r}.")
        if not key.isdigit():
            raise ApiError(404, "OBJECT_NOT_FOUND", "resource not found")
        with self.store.read() as conn:
            owner = self.store.owner(conn, int(key), id_property == "userId", _bool_param(query, "archived"))
        if owner is None:
            raise ApiError(404, "OBJECT_NOT_FOUND", "resource not found")
        return _json(200, owner)

    # ------------------------------------------------------------------ control

    def _control(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Response:
        if path == "/__sandbox/health":
            return _json(200, {"ok": True})
        self._authorized(headers)
        if path == "/__sandbox/stats":
            if method == "DELETE":
                self.stats.reset()
            return _json(200, self.stats.snapshot())
        if path == "/__sandbox/stats/reset":
            self._allow(method, "POST")
            self.stats.reset()
            return _json(200, self.stats.snapshot())
        if path == "/__sandbox/faults":
            if method == "POST":
                payload = self._body(body)
                if not isinstance(payload, dict):
                    raise ApiError(400, "VALIDATION_ERROR", "Fault settings must be a JSON object.")
                reset = bool(payload.pop("reset", False))
                try:
                    self.faults.configure(Faults.from_dict(payload, None if reset else self.faults.faults))
                except (TypeError, ValueError) as exc:
                    raise ApiError(400, "VALIDATION_ERROR", str(exc)) from None
            else:
                self._allow(method, "GET")
            return _json(200, self.faults.faults.as_dict())
        raise ApiError(404, "OBJECT_NOT_FOUND", f"Unknown sandbox control endpoint {path}.")
