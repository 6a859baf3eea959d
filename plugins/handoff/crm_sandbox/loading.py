"""Loading objects in HubSpot's v3 API shape (the sample's ``crm/*.jsonl.gz`` files, a test's dicts) into the
sandbox's store: records with their property histories, associations and merged ids, owners, and the custom
properties the objects carry."""

from __future__ import annotations

import gzip
import sqlite3
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import orjson

from .model import (
    CREATEDATE_PROPERTY,
    HUBSPOT_PROPERTIES,
    LASTMODIFIED_PROPERTY,
    MERGED_IDS_PROPERTY,
    OBJECT_TYPES,
    UNIQUE_PROPERTIES,
    canonical_type,
    parse_datetime_ms,
    singular,
    stage_dates_from_history,
)
from .store import Record, Store


def load_api_objects(store: Store, conn: sqlite3.Connection, object_type: str, objects: Iterable[dict[str, Any]],
                     source: str = "<objects>") -> int:
    """Upsert objects given in the HubSpot v3 shape; returns how many were loaded."""
    if object_type == "owners":
        return _load_owners(store, conn, objects, source)
    kind = canonical_type(object_type)
    if kind is None:
        raise ValueError(f"{source}: unknown CRM object type {object_type!r}; expected one of "
                         f"{', '.join(OBJECT_TYPES)} or owners")
    count = 0
    max_id = 0
    known = set(HUBSPOT_PROPERTIES[kind]) | set(store.property_definitions(conn, kind))
    for position, obj in enumerate(objects, start=1):
        where = f"{source}:{position}"
        record, history, assocs = _record_from_api(kind, obj, where)
        if kind == "contacts":
            _add_stage_dates(record, history)
        # The objects came from an account that has every property they carry: register the custom ones.
        for name in sorted(set(record.properties) - known):
            store.save_property(conn, kind, {"name": name, "label": name, "type": "string", "fieldType": "text",
                                             "groupName": f"{singular(kind)}information", "description": "",
                                             "hasUniqueValue": name == UNIQUE_PROPERTIES.get(kind)})
            known.add(name)
        for merged in str(record.properties.get(MERGED_IDS_PROPERTY) or "").split(";"):
            if merged.strip().isdigit() and int(merged) != record.id:
                store.record_merge(conn, kind, int(merged), record.id)
        store.save(conn, record)
        store.replace_history(conn, kind, record.id, _history_rows(history, where, record.id))
        for to_type, to_id, label in assocs:
            store.associate(conn, kind, record.id, to_type=to_type, to_id=to_id, label=label)
        max_id = max(max_id, record.id)
        count += 1
    store.bump_next_id(conn, max_id)
    return count


def _history_rows(history: dict[str, list[dict[str, Any]]], where: str,
                  record_id: int) -> list[tuple[str, int, str | None, int, str, str | None, int | None]]:
    """The API's ``propertiesWithHistory`` (newest first) as the store's rows, numbered oldest first."""
    rows = []
    for prop, entries in history.items():
        total = len(entries)
        for position, entry in enumerate(entries):  # newest first in the API shape
            ts_ms = parse_datetime_ms(entry.get("timestamp"))
            if ts_ms is None:
                raise ValueError(f"{where}: {prop} history entry without a valid timestamp (record id {record_id})")
            rows.append((prop, total - position, entry.get("value"), ts_ms, entry.get("sourceType") or "IMPORT",
                         _opt_str(entry.get("sourceId")), _opt_int(entry.get("updatedByUserId"))))
    return rows


def _load_owners(store: Store, conn: sqlite3.Connection, owners: Iterable[dict[str, Any]], source: str) -> int:
    count = 0
    for position, owner in enumerate(owners, start=1):
        owner_id = str(owner.get("id", ""))
        if not owner_id.isdigit():
            raise ValueError(f"{source}:{position}: owner id must be digits, got {owner.get('id')!r}")
        record = dict(owner)
        record["id"] = owner_id
        record.setdefault("type", "PERSON")
        record.setdefault("archived", False)
        record.setdefault("teams", [])
        if record.get("userId") is not None:
            record["userId"] = _opt_int(record["userId"])
            record.setdefault("userIdIncludingInactive", record["userId"])
        for key in ("createdAt", "updatedAt"):
            if not record.get(key):
                raise ValueError(f"{source}:{position}: owner {owner_id} has no {key}")
        store.save_owner(conn, record)
        count += 1
    return count


def _add_stage_dates(record: Record, history: dict[str, list[dict[str, Any]]]) -> None:
    """Stage dates a loaded contact does not carry, as HubSpot would have set them: from its lifecyclestage
    history, or (no history) from its current stage at its creation time."""
    entries = [(parse_datetime_ms(e.get("timestamp")), e.get("value")) for e in history.get("lifecyclestage") or []]
    stamped = [(ms, value) for ms, value in entries if ms is not None]
    if not stamped and record.properties.get("lifecyclestage"):
        stamped = [(record.created_ms, record.properties["lifecyclestage"])]
    for prop, stamp in stage_dates_from_history(stamped).items():
        if not record.properties.get(prop):
            record.properties[prop] = stamp


def _opt_str(value: Any) -> str | None:
    return None if value is None else str(value)


def _opt_int(value: Any) -> int | None:
    if value is None or isinstance(value, bool):
        return None
    text = str(value).strip()
    return int(text) if text.lstrip("-").isdigit() else None


def _record_from_api(object_type: str, obj: dict[str, Any],
                     where: str) -> tuple[Record, dict[str, list[dict[str, Any]]], list[tuple[str, int, str]]]:
    raw_id = str(obj.get("id", ""))
    if not raw_id.isdigit():
        raise ValueError(f"{where}: {object_type} id must be digits, got {obj.get('id')!r}")
    props = {k: (None if v is None else (v if isinstance(v, str) else _prop_str(v)))
             for k, v in (obj.get("properties") or {}).items()}
    created_ms = parse_datetime_ms(obj.get("createdAt")) or parse_datetime_ms(
        props.get(CREATEDATE_PROPERTY[object_type]))
    updated_ms = parse_datetime_ms(obj.get("updatedAt")) or parse_datetime_ms(
        props.get(LASTMODIFIED_PROPERTY[object_type])) or created_ms
    if created_ms is None or updated_ms is None:
        raise ValueError(f"{where}: {object_type} {raw_id} has no createdAt/updatedAt (ISO-8601)")
    archived = bool(obj.get("archived"))
    archived_ms = parse_datetime_ms(obj.get("archivedAt")) if archived else None
    if archived and archived_ms is None:
        archived_ms = updated_ms
    record = Record(object_type, int(raw_id), props, created_ms, updated_ms, archived, archived_ms)
    history = obj.get("propertiesWithHistory") or {}
    assocs: list[tuple[str, int, str]] = []
    for to_name, block in (obj.get("associations") or {}).items():
        to_type = canonical_type(to_name)
        if to_type is None:
            raise ValueError(f"{where}: unknown association target type {to_name!r}")
        for item in (block or {}).get("results", []):
            to_id = str(item.get("id", ""))
            if not to_id.isdigit():
                raise ValueError(f"{where}: association id must be digits, got {item.get('id')!r}")
            label = item.get("type") or f"{object_type.rstrip('s')}_to_{to_type.rstrip('s')}"
            assocs.append((to_type, int(to_id), label))
    company_id = props.get("associatedcompanyid")
    if object_type == "contacts" and company_id and str(company_id).isdigit():
        assocs.append(("companies", int(company_id), "contact_to_company"))
    return record, history, assocs


def _prop_str(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def read_jsonl_gz(path: Path) -> Iterator[dict[str, Any]]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as lines:
        for line_number, raw in enumerate(lines, start=1):
            text = raw.strip()
            if not text:
                continue
            try:
                yield orjson.loads(text)
            except orjson.JSONDecodeError as exc:
                raise ValueError(f"{path}:{line_number}: not valid JSON ({exc})") from exc
