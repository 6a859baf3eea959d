"""The CRM v3 read endpoints of the sandbox: list, get, search, batch read, associations, owners."""

from __future__ import annotations

import sqlite3
from typing import Any
from urllib.parse import quote

from .http import ApiError, Response, after_param, bool_param, int_param, json_response, list_param, row_error
from .limits import limit
from .model import (
    CREATEDATE_PROPERTY,
    LASTMODIFIED_PROPERTY,
    canonical_type,
    iso_from_ms,
)
from .search import RESULT_CAP, SearchError, parse_search, record_matches, sort_key, updated_bounds
from .store import Record

MAX_LIST_LIMIT = limit("list_page")
MAX_LIST_LIMIT_WITH_HISTORY = limit("list_page_with_history")
MAX_BATCH_READ_WITH_HISTORY = limit("batch_read_inputs_with_history")
MAX_ASSOCIATION_INPUTS = limit("association_batch_read_inputs")
MAX_OWNERS_LIMIT = limit("owners_page")


def effective_properties(rec: Record) -> dict[str, Any]:
    """Stored properties plus the ones HubSpot derives from the record itself."""
    props = dict(rec.properties)
    props["hs_object_id"] = str(rec.id)
    props[LASTMODIFIED_PROPERTY[rec.object_type]] = iso_from_ms(rec.updated_ms)
    created = CREATEDATE_PROPERTY[rec.object_type]
    if not props.get(created):
        props[created] = iso_from_ms(rec.created_ms)
    return props



class ReadEndpoints:
    """Mixed into SandboxApp (app.py), whose store, clock and rendering these use."""

    def list_objects(self, object_type: str, query: dict[str, list[str]], base: str) -> Response:
        history = list_param(query, "propertiesWithHistory")
        limit = int_param(query, "limit", 10, MAX_LIST_LIMIT)
        if history:
            limit = min(limit, MAX_LIST_LIMIT_WITH_HISTORY)
        after = after_param(query)
        archived = bool_param(query, "archived")
        with self.store.read() as conn:
            records = self.store.page(conn, object_type, after, limit + 1, archived)
            results = self._render(conn, records[:limit], list_param(query, "properties"), history,
                                   self._assoc_types(query))
        payload: dict[str, Any] = {"results": results}
        if len(records) > limit:
            next_after = str(records[limit].id)
            link_query = "&".join(f"{quote(k)}={quote(v)}" for k, vs in query.items() if k != "after" for v in vs)
            link = f"{base}/crm/v3/objects/{object_type}?{link_query + '&' if link_query else ''}after={next_after}"
            payload["paging"] = {"next": {"after": next_after, "link": link}}
        return json_response(200, payload)

    @staticmethod
    def _assoc_types(query: dict[str, list[str]]) -> list[str] | None:
        names = list_param(query, "associations")
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
        archived = bool_param(query, "archived")
        id_property = (query.get("idProperty") or [None])[-1]
        with self.store.read() as conn:
            rec = self._lookup(conn, object_type, key, id_property, archived)
            if rec is None:
                raise ApiError(404, "OBJECT_NOT_FOUND", "resource not found")
            result = self._render(conn, [rec], list_param(query, "properties"),
                                  list_param(query, "propertiesWithHistory"), self._assoc_types(query))[0]
        return json_response(200, result)

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
        return json_response(200, payload)

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
                error = row_error("OBJECT_NOT_FOUND", f"No {to_type} is associated with {from_type} {key}.",
                                   {"fromObjectId": [key]})
                errors.append({**error, "subCategory": "crm.associations.NO_ASSOCIATIONS_FOUND"})
        return self._batch_response(results, errors, started, success_status=200)

    def list_owners(self, query: dict[str, list[str]], base: str) -> Response:
        limit = int_param(query, "limit", 100, MAX_OWNERS_LIMIT)
        after = after_param(query)
        email = (query.get("email") or [None])[-1]
        with self.store.read() as conn:
            owners = self.store.owners_page(conn, after, limit + 1, bool_param(query, "archived"), email)
        payload: dict[str, Any] = {"results": owners[:limit]}
        if len(owners) > limit:
            next_after = str(owners[limit]["id"])
            payload["paging"] = {"next": {"after": next_after, "link": f"{base}/crm/v3/owners/?after={next_after}"}}
        return json_response(200, payload)

    def get_owner(self, key: str, query: dict[str, list[str]]) -> Response:
        id_property = (query.get("idProperty") or ["id"])[-1]
        if id_property not in ("id", "userId"):
            raise ApiError(400, "VALIDATION_ERROR", f"idProperty must be id or userId, got {id_property!r}.")
        if not key.isdigit():
            raise ApiError(404, "OBJECT_NOT_FOUND", "resource not found")
        with self.store.read() as conn:
            owner = self.store.owner(conn, int(key), id_property == "userId", bool_param(query, "archived"))
        if owner is None:
            raise ApiError(404, "OBJECT_NOT_FOUND", "resource not found")
        return json_response(200, owner)
