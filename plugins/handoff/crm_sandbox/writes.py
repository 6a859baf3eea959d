"""The CRM v3 write endpoints of the sandbox: update, create, archive (one or a batch), merge and GDPR delete, with
HubSpot's validation: unknown properties, unique values, owners, 207 multi-status for a batch with bad rows."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Any

from .http import ApiError, Response, json_response, problem_details, row_error
from .limits import FaultDecision, limit
from .model import (
    ASSOCIATION_TYPES,
    CREATEDATE_PROPERTY,
    HUBSPOT_PROPERTIES,
    LASTMODIFIED_PROPERTY,
    LIFECYCLE_ORDER,
    MERGED_IDS_PROPERTY,
    READ_ONLY_PROPERTIES,
    REQUIRES_TIMESTAMP,
    UNIQUE_PROPERTIES,
    PropertyProblem,
    check_property_writes,
    iso_from_ms,
    stage_dates,
    validation_message,
)
from .store import Record

MAX_BATCH_INPUTS = limit("batch_inputs")
INTEGRATION_SOURCE = "INTEGRATION"



class WriteEndpoints:
    """Mixed into SandboxApp (app.py), whose store, clock and rendering these use."""

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
        return row_error("OBJECT_NOT_FOUND", f"Could not get some {kind} objects, they may be deleted or not "
                          "exist. Check that ids are valid.", {"ids": ids})

    def _batch_response(self, results: list[dict[str, Any]], errors: list[dict[str, Any]], started: int,
                        success_status: int) -> Response:
        payload: dict[str, Any] = {"status": "COMPLETE", "results": results,
                                   "startedAt": iso_from_ms(started), "completedAt": iso_from_ms(self.now_ms())}
        if errors:
            payload["numErrors"] = len(errors)
            payload["errors"] = errors
            return json_response(207, payload)
        return json_response(success_status, payload)

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
            raise ApiError(400, "VALIDATION_ERROR", validation_message(problems), errors=problem_details(problems))

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
                               errors=problem_details(check.problems))
            if conflict := self._unique_conflict(conn, object_type, check.values, rec.id):
                raise conflict
            self._apply(conn, rec, check.values, self.now_ms())
            result = self._written(conn, rec, list(check.values), None)
        return json_response(200, result)

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
                    errors.append(row_error("VALIDATION_ERROR", "properties must be an object", context))
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
                    errors.append(row_error("VALIDATION_ERROR", validation_message(check.problems), context,
                                             problem_details(check.problems)))
                    continue
                if conflict := self._unique_conflict(conn, object_type, check.values, rec.id):
                    errors.append(row_error("CONFLICT", conflict.message, context))
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
                               errors=problem_details(problems))
            if conflict := self._unique_conflict(conn, object_type, values, None):
                raise conflict
            rec = self._insert(conn, object_type, values, links, self.now_ms())
            result = self._render(conn, [rec], list(rec.properties), None, None)[0]
        return json_response(201, result)

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
                    errors.append(row_error("VALIDATION_ERROR", validation_message(problems), context,
                                             problem_details(problems)))
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
        return json_response(200, result)

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
