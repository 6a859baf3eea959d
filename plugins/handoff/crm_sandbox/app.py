"""Request handling for the CRM sandbox: routing, auth, rate limits, faults and rendering. Transport-free:
`SandboxApp.handle()` takes a request and returns a `Response`, so the HTTP server in `server.py` stays a thin
adapter. The HubSpot CRM v3 endpoints themselves are mixed in: `reads.py` (list, get, search, batch read,
associations, owners), `writes.py` (update, create, archive, merge, GDPR delete) and `properties_api.py` (the
property registry); `http.py` holds the response and error shapes."""

from __future__ import annotations

import hmac
import re
import sqlite3
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson

from .http import ApiError, Response, bool_param, error_body, json_response
from .limits import FaultDecision, FaultInjector, Faults, RateLimiter, Stats, limit
from .model import (
    ALWAYS_PROPERTIES,
    DEFAULT_PROPERTIES,
    canonical_type,
    iso_from_ms,
)
from .properties_api import PropertyEndpoints
from .reads import ReadEndpoints, effective_properties
from .store import Record, Store
from .writes import WriteEndpoints

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


class SandboxApp(ReadEndpoints, WriteEndpoints, PropertyEndpoints):
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
                return json_response(exc.status, error_body(exc.category, exc.message, **exc.extra))
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
            return json_response(503, error_body("SERVICE_UNAVAILABLE", "Service Unavailable (sandbox is down)."))
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
                return json_response(503, error_body("SERVICE_UNAVAILABLE",
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
            response = json_response(exc.status, error_body(exc.category, exc.message, **exc.extra))
        except sqlite3.Error as exc:
            response = json_response(500, error_body("INTERNAL_ERROR", f"Sandbox state error: {exc}"))
        response.headers.update(rate_headers)
        return response

    def _rate_limited(self, policy: str, headers: dict[str, str]) -> Response:
        period = policy.lower()
        group = "publicapi:crm-search" if policy == "SECONDLY" else "publicapi:private-app:sandbox"
        body = error_body(None, f"You have reached your {period} limit.", errorType="RATE_LIMIT",
                           policyName=policy, groupName=group)
        return json_response(429, body, headers)

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
                return self.batch_read(object_type, payload, bool_param(query, "archived"))
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


    # ------------------------------------------------------------------ control

    def _control(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Response:
        if path == "/__sandbox/health":
            return json_response(200, {"ok": True})
        self._authorized(headers)
        if path == "/__sandbox/stats":
            if method == "DELETE":
                self.stats.reset()
            return json_response(200, self.stats.snapshot())
        if path == "/__sandbox/stats/reset":
            self._allow(method, "POST")
            self.stats.reset()
            return json_response(200, self.stats.snapshot())
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
            return json_response(200, self.faults.faults.as_dict())
        raise ApiError(404, "OBJECT_NOT_FOUND", f"Unknown sandbox control endpoint {path}.")
