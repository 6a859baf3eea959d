"""Incremental CRM sync: HubSpot CRM v3 objects into ``raw.crm_<object>``.

Per object type, the window is (watermark − SEARCH_SETTLE, interval_end], the watermark being the largest
``updatedAt`` (or ``archivedAt``) loaded so far, kept in ``ops.crm_watermarks`` and capped at ``interval_end``; the
first run (no watermark) is a full sync. The window reaches SEARCH_SETTLE back before the watermark because
HubSpot's search index trails writes: a record changed just before a run may not be found by it yet, while a later
record already moved the watermark past it; the next run finds it in the overlap. A version raw already holds is
not loaded again (counted as ``rows_already_loaded``), so a quiet CRM still loads nothing and source freshness
still sees it.

Live records and archived records (``archived=true``, with their ``archivedAt``) are fetched into a local spool
first — no transaction stays open while we talk to the API — and then each object type's batch is one
transaction: COPY into the raw table, quarantine rows, the ``ops.load_log`` row and the watermark update commit
together, so the watermark only moves once the rows are in.

A record without an id, or whose ``updatedAt`` does not parse, goes to ``raw.quarantine`` (with the object as
raw_text) and does not move the watermark. Raw rows are append-only: a record appears once per version we saw
(and possibly twice when it changed while we paged); staging dedupes on (record_id, updated_at).
"""

from __future__ import annotations

import logging
import tempfile
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import psycopg
from psycopg import sql

from handoff.crm.client import CrmClient
from handoff.crm.timestamps import parse_timestamp
from handoff.load import batches, copytext

log = logging.getLogger(__name__)

SOURCE_KIND = "crm_api"
# How far each window reaches back before the watermark: longer than HubSpot's search index takes to show a write
# (seconds, by HubSpot's own account). Each run re-reads the records changed in this stretch before its watermark.
SEARCH_SETTLE = timedelta(minutes=10)
RAW_COLUMNS = "_batch_id, _loaded_at, _source, record_id, updated_at, archived, record"


@dataclass(frozen=True)
class ObjectSpec:
    properties: tuple[str, ...] = ()
    history: tuple[str, ...] = ()
    associations: tuple[str, ...] = ()


# The lifecycle stages whose dates the contacts extract carries: HubSpot's "Became a ... date"
# (hs_lifecyclestage_<stage>_date) and "Date entered ..." (hs_v2_date_entered_<stage>), set when the stage is first
# entered (evidence for stage events besides propertiesWithHistory.lifecyclestage).
STAGE_DATE_STAGES = ("lead", "marketingqualifiedlead", "salesqualifiedlead", "opportunity", "customer")
STAGE_DATE_PROPERTIES = tuple(f"hs_lifecyclestage_{s}_date" for s in STAGE_DATE_STAGES) + tuple(
    f"hs_v2_date_entered_{s}" for s in STAGE_DATE_STAGES)

# What handoff reads of each object (docs/data-contracts.md).
OBJECTS: dict[str, ObjectSpec] = {
    "owners": ObjectSpec(),
    "companies": ObjectSpec(("name", "domain", "industry", "numberofemployees", "annualrevenue",
                             "monthly_web_visitors", "web_technologies", "country", "hubspot_owner_id",
                             "createdate", "hs_lastmodifieddate")),
    "contacts": ObjectSpec(("email", "firstname", "lastname", "phone", "jobtitle", "persona",
                            "associatedcompanyid", "hubspot_owner_id", "lifecyclestage", "hs_lead_status",
                            "hs_analytics_source", "hs_analytics_source_data_1", "hs_email_optout",
                            "hs_email_bounce", "createdate", "lastmodifieddate", "handoff_score",
                            "handoff_reasons", "handoff_sql_at", "hs_merged_object_ids", *STAGE_DATE_PROPERTIES),
                       history=("lifecyclestage",)),
    "deals": ObjectSpec(("dealname", "pipeline", "dealstage", "amount", "createdate", "closedate",
                         "hubspot_owner_id", "hs_lastmodifieddate"), associations=("contacts", "companies")),
    "meetings": ObjectSpec(("hs_timestamp", "hs_meeting_title", "hs_meeting_outcome", "hubspot_owner_id",
                            "hs_createdate", "hs_lastmodifieddate"), associations=("contacts",)),
    "calls": ObjectSpec(("hs_timestamp", "hs_call_direction", "hs_call_disposition", "hs_call_title",
                         "hubspot_owner_id", "hs_createdate", "hs_lastmodifieddate"), associations=("contacts",)),
    "tasks": ObjectSpec(("hs_task_subject", "hs_task_body", "hs_timestamp", "hs_task_status", "hs_task_priority",
                         "hs_task_type", "hubspot_owner_id", "handoff_dedupe_key", "hs_createdate",
                         "hs_lastmodifieddate"), associations=("contacts",)),
}
DEFAULT_OBJECTS = ("owners", "companies", "contacts", "deals", "meetings", "calls")


def get_watermark(cur: psycopg.Cursor, object_type: str) -> datetime | None:
    row = cur.execute("select watermark from ops.crm_watermarks where object_type = %s", [object_type]).fetchone()
    return row[0] if row else None


class _Spool:
    """Validated rows of one object type as COPY text in a spooled temp file, plus their quarantine."""

    def __init__(self, batch_id: uuid.UUID, loaded_at: datetime, source: str, *,
                 overlap_to: datetime | None = None) -> None:
        self.file = tempfile.SpooledTemporaryFile(max_size=16 << 20)  # noqa: SIM115 - closed by close()
        self.qfile = tempfile.SpooledTemporaryFile(max_size=4 << 20)  # noqa: SIM115
        self.quarantine = batches.Quarantine(batch_id, loaded_at, source, self.qfile)
        self.prefix = f"{batch_id}\t{loaded_at.isoformat()}\t{copytext.field(source)}\t".encode()
        self.rows = 0
        self.already_loaded = 0
        self.max_stamp: datetime | None = None
        # records stamped at or before the watermark (SEARCH_SETTLE's overlap): held until admit_overlap drops the
        # versions raw already has
        self.overlap_to = overlap_to
        self.overlap: dict[tuple[str, datetime, bool], tuple[datetime, bytes]] = {}

    def add(self, obj: Any) -> None:
        if not isinstance(obj, dict):
            self.quarantine.add(None, None, orjson.dumps(obj), "not a JSON object")
            return
        record_id = obj.get("id")
        data = orjson.dumps(obj)
        ref = str(record_id) if isinstance(record_id, str | int) and not isinstance(record_id, bool) else None
        if ref is None or ref == "":
            self.quarantine.add(None, None, data, "missing id")
            return
        updated = parse_timestamp(obj.get("updatedAt"))
        if updated is None:
            self.quarantine.add(None, ref, data, f"unparseable updatedAt: {str(obj.get('updatedAt'))[:64]!r}")
            return
        if b"\\u0000" in data:
            self.quarantine.add(None, ref, data, "NUL character (\\u0000) in a value: PostgreSQL cannot store it")
            return
        archived = obj.get("archived") is True
        stamp = max(updated, parse_timestamp(obj.get("archivedAt")) or updated) if archived else updated
        if self.overlap_to is not None and stamp <= self.overlap_to:
            self.overlap[(ref, updated, archived)] = (stamp, data)
            return
        self._write(ref, updated, archived, stamp, data)

    def _write(self, ref: str, updated: datetime, archived: bool, stamp: datetime, data: bytes) -> None:
        if self.max_stamp is None or stamp > self.max_stamp:
            self.max_stamp = stamp
        self.file.write(self.prefix)
        self.file.write(f"{copytext.field(ref)}\t{updated.isoformat()}\t{'t' if archived else 'f'}\t".encode())
        self.file.write(copytext.escape_bytes(data))
        self.file.write(b"\n")
        self.rows += 1

    def admit_overlap(self, cur: psycopg.Cursor, table: str) -> None:
        """The overlap's records whose version raw does not hold yet (the ones the search index showed late) join
        the rows; the others were loaded by an earlier run and are only counted (already_loaded)."""
        if not self.overlap:
            return
        keys = list(self.overlap)
        held = set(cur.execute(
            sql.SQL("select r.record_id, r.updated_at, r.archived from {} as r "
                    "join unnest(%s::text[], %s::timestamptz[], %s::boolean[]) as k (record_id, updated_at, archived) "
                    "using (record_id, updated_at, archived)").format(sql.Identifier("raw", table)),
            [[k[0] for k in keys], [k[1] for k in keys], [k[2] for k in keys]]).fetchall())
        for key in keys:
            if key in held:
                self.already_loaded += 1
            else:
                self._write(*key, *self.overlap[key])
        self.overlap.clear()

    def copy_into(self, cur: psycopg.Cursor, table: str) -> None:
        self.file.seek(0)
        stmt = sql.SQL("COPY {} ({}) FROM STDIN").format(sql.Identifier("raw", table), sql.SQL(RAW_COLUMNS))
        with cur.copy(stmt) as copy:
            while chunk := self.file.read(1 << 20):
                copy.write(chunk)
        self.quarantine.copy_into(cur)

    def close(self) -> None:
        self.file.close()
        self.qfile.close()


def sync_object(conn: psycopg.Connection, client: CrmClient, object_type: str, *, interval_end: datetime,
                interval_start: datetime | None = None) -> dict[str, Any]:
    """Sync one object type (one batch, one transaction). Returns its counts and the new watermark."""
    spec = OBJECTS[object_type]
    table = f"crm_{object_type}"
    with conn.cursor() as cur:
        watermark = get_watermark(cur, object_type)
    conn.commit()
    batch_id, started = uuid.uuid4(), batches.now()
    source = f"{client.base_url}/crm/v3/{'owners' if object_type == 'owners' else 'objects/' + object_type}"
    since = watermark - SEARCH_SETTLE if watermark is not None else None
    spool = _Spool(batch_id, started, source, overlap_to=watermark)
    try:
        for archived in (False, True):
            for obj in client.iter_objects(object_type, spec.properties, properties_with_history=spec.history,
                                           associations=spec.associations, archived=archived,
                                           updated_since=since, updated_before=interval_end):
                spool.add(obj)
        with conn.cursor() as cur:
            spool.admit_overlap(cur, table)
        conn.commit()
        new_mark = watermark
        if spool.max_stamp is not None:
            capped = min(spool.max_stamp, interval_end)
            new_mark = capped if watermark is None else max(watermark, capped)
        read = spool.rows + spool.quarantine.count
        with conn.transaction(), conn.cursor() as cur:
            batches.begin_batch(cur, batch_id, source=source, source_kind=SOURCE_KIND,
                                interval_start=interval_start if interval_start is not None else since,
                                interval_end=interval_end, started_at=started)
            spool.copy_into(cur, table)
            batches.finish_batch(cur, batch_id, rows_read=read, rows_loaded=spool.rows,
                                 rows_quarantined=spool.quarantine.count)
            if new_mark is not None and new_mark != watermark:
                cur.execute(
                    "insert into ops.crm_watermarks (object_type, watermark, batch_id, updated_at) "
                    "values (%s, %s, %s, clock_timestamp()) on conflict (object_type) do update set "
                    "watermark = excluded.watermark, batch_id = excluded.batch_id, updated_at = excluded.updated_at",
                    [object_type, new_mark, batch_id])
    finally:
        spool.close()
    log.info("%s: %d loaded, %d quarantined, %d already loaded, watermark %s -> %s", object_type, spool.rows,
             spool.quarantine.count, spool.already_loaded, watermark, new_mark)
    return {"rows_read": read, "rows_loaded": spool.rows, "rows_quarantined": spool.quarantine.count,
            "rows_already_loaded": spool.already_loaded,
            "watermark_before": watermark.isoformat() if watermark else None,
            "watermark": new_mark.isoformat() if new_mark else None, "batch_id": str(batch_id)}


def sync_crm(conninfo: str, client: CrmClient, *, interval_end: datetime,
             objects: Iterable[str] = DEFAULT_OBJECTS) -> dict[str, Any]:
    """Incremental sync of each object type into raw.crm_<object>; one transaction per object type.

    Returns per-object counts and watermarks plus totals (an XCom: counts only). A failing object type stops the
    sync with its error; object types synced before it stay committed, and the rerun resumes from their
    watermarks.
    """
    objects = tuple(objects)
    unknown = [o for o in objects if o not in OBJECTS]
    if unknown:
        raise ValueError(f"unknown CRM object type(s) {unknown}; known: {sorted(OBJECTS)}")
    if interval_end.tzinfo is None:
        interval_end = interval_end.replace(tzinfo=UTC)
    summary: dict[str, Any] = {"objects": {}, "rows_loaded": 0, "rows_quarantined": 0}
    with psycopg.connect(conninfo) as conn:
        for object_type in objects:
            res = sync_object(conn, client, object_type, interval_end=interval_end)
            summary["objects"][object_type] = res
            summary["rows_loaded"] += res["rows_loaded"]
            summary["rows_quarantined"] += res["rows_quarantined"]
    summary["requests_sent"] = client.requests_sent
    return summary
