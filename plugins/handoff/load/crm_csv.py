"""CRM CSV exports into ``raw.crm_<object>``, in the same shape as the API extract.

Each row becomes ``{"id", "properties": {...}, "createdAt", "updatedAt", "archived": false}`` through the
configured mapping (``config/sources.yml`` → ``crm.csv_mapping``): mapped columns become properties (or, for
owners, top-level fields; ``associations.<object>`` columns become ``associations``), and every column the
mapping does not name is kept under ``record.extra`` (label → value), so nothing is lost. Empty cells are null,
as the API returns them. Contacts get ``propertiesWithHistory.lifecyclestage`` (newest first) from the
``lifecycle_stage_history`` export when it is configured and present.

One object = one batch = one transaction, with the checksum ledger: a file whose exact bytes were loaded before
is skipped (the contacts batch is skipped only when both the contacts file and the history file were). Rows
without an id, with an unparseable last-modified date, invalid UTF-8 or the wrong number of fields go to
``raw.quarantine``. CSV headers are data, never SQL: table names come from the fixed object list and reach SQL
only through ``psycopg.sql.Identifier``.
"""

from __future__ import annotations

import csv
import logging
import os
import re
import tempfile
import uuid
from collections import defaultdict
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import psycopg
from psycopg import sql

from handoff import sources
from handoff.load import batches, copytext
from handoff.load.batches import LoadError
from handoff.sources import HISTORY_OBJECT, CsvObjectMapping

log = logging.getLogger(__name__)

SOURCE_KIND = "crm_csv"
RAW_COLUMNS = ("_batch_id", "_loaded_at", "_source", "record_id", "updated_at", "archived", "record")
_SURROGATE = re.compile("[\udc80-\udcff]")
csv.field_size_limit(16 << 20)


def _iso(dt: datetime) -> str:
    dt = dt.astimezone(UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def _parse_ts(value: str | None) -> datetime | None:
    if not value:
        return None
    text = value.strip()
    try:
        if text.isdigit():  # epoch milliseconds, as some exports write them
            return datetime.fromtimestamp(int(text) / 1000, UTC)
        dt = datetime.fromisoformat(text)
    except (ValueError, OverflowError, OSError):
        return None
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt


def _rows(path: Path) -> Iterator[tuple[int, list[str] | None, str | None]]:
    """(line number, fields, None) per row, or (line, None, reason) for a row the csv module cannot read.
    Decoding keeps invalid UTF-8 as surrogates so the row can be quarantined rather than the file failing."""
    with open(path, encoding="utf-8-sig", errors="surrogateescape", newline="") as fh:
        reader = csv.reader(fh)
        while True:
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                yield reader.line_num, None, f"unreadable CSV row: {exc}"
                continue
            yield reader.line_num, row, None


def _read_history(path: Path, mapping: CsvObjectMapping, quarantine: batches.Quarantine | None
                  ) -> dict[str, list[dict[str, Any]]]:
    history: dict[str, list[dict[str, Any]]] = defaultdict(list)
    rows = _rows(path)
    header = _header(path, rows, mapping)
    index = {label: i for i, label in enumerate(header)}
    for line, row, problem in rows:
        if row is None:
            reason = f"{path.name}: {problem}"
        elif len(row) != len(header):
            reason = None if row == [""] else f"{path.name}: row has {len(row)} fields, the header has {len(header)}"
        elif _SURROGATE.search("".join(row)):
            reason = f"{path.name}: invalid UTF-8"
        else:
            reason = ""
        if reason is None:
            continue
        if reason:
            if quarantine is not None:
                quarantine.add(line, None, ",".join(row or []).encode("utf-8", "surrogateescape"), reason)
            continue
        contact_id = row[index[mapping.id_column]].strip()
        entry = {field: None for field in sources.HISTORY_FIELDS}
        for label, target in mapping.columns.items():
            if label in index:
                entry[target] = row[index[label]] or None
        if contact_id:
            history[contact_id].append(entry)
    for entries in history.values():  # newest first, as the API returns them
        entries.sort(key=lambda e: _parse_ts(e.get("timestamp")) or datetime.min.replace(tzinfo=UTC), reverse=True)
    return history


def _header(path: Path, rows: Iterator, mapping: CsvObjectMapping) -> list[str]:
    try:
        _, header, problem = next(rows)
    except StopIteration:
        return []
    if header is None:
        raise LoadError(f"{path}: the header row cannot be read ({problem})")
    header = [h.strip() for h in header]
    if mapping.id_column not in header:
        raise LoadError(f"{path}: no column {mapping.id_column!r} (crm.csv_mapping.{mapping.object_type}.id_column in "
                        f"config/sources.yml); the header has: {', '.join(repr(h) for h in header[:20])}")
    missing = [label for label in mapping.columns if label not in header]
    if missing:
        log.warning("%s: mapped column(s) not in the file, their properties load as null: %s", path, missing)
    return header


class _Builder:
    """Turns CSV rows of one object into HubSpot-shaped records."""

    def __init__(self, mapping: CsvObjectMapping, header: list[str], history: Mapping[str, list] | None) -> None:
        self.mapping = mapping
        self.header = header
        self.history = history
        self.id_i = header.index(mapping.id_column)
        self.upd_i = header.index(mapping.updated_at_column) if mapping.updated_at_column in header else None
        self.crt_i = header.index(mapping.created_at_column) if mapping.created_at_column in header else None
        self.mapped = [(i, mapping.columns[label]) for i, label in enumerate(header) if label in mapping.columns]
        special = {mapping.id_column, mapping.updated_at_column, mapping.created_at_column}
        self.extra = [(i, label) for i, label in enumerate(header)
                      if label not in mapping.columns and label not in special]

    def build(self, row: list[str]) -> tuple[str, datetime | None, dict[str, Any]]:
        record_id = row[self.id_i].strip()
        updated = _parse_ts(row[self.upd_i]) if self.upd_i is not None else None
        created = _parse_ts(row[self.crt_i]) if self.crt_i is not None else None
        fields: dict[str, Any] = {}
        associations: dict[str, Any] = {}
        for i, target in self.mapped:
            value = row[i] if row[i] != "" else None
            if target.startswith("associations."):
                ids = [x.strip() for x in (value or "").replace(",", ";").split(";") if x.strip()]
                associations[target.split(".", 1)[1]] = {"results": [{"id": x} for x in ids]}
            elif target == "teams" and self.mapping.top_level:
                fields["teams"] = [{"name": value, "primary": True}] if value else []
            elif target != "id":
                fields[target] = value
        record: dict[str, Any] = {"id": record_id}
        if self.mapping.top_level:
            record.update(fields)
        else:
            record["properties"] = fields
        record["createdAt"] = _iso(created) if created else None
        record["updatedAt"] = _iso(updated) if updated else None
        record["archived"] = False
        if associations:
            record["associations"] = associations
        if self.history is not None:
            record["propertiesWithHistory"] = {"lifecyclestage": self.history.get(record_id, [])}
        if self.extra:
            record["extra"] = {label: row[i] for i, label in self.extra}
        return record_id, updated, record


def _load_object(conn: psycopg.Connection, csv_dir: Path, mapping: CsvObjectMapping,
                 history_mapping: CsvObjectMapping | None, interval_end: datetime) -> dict[str, Any] | None:
    path = csv_dir / mapping.file
    if not path.exists():
        log.info("%s: no export file, skipped", path)
        return None
    files = [path]
    hist_path = csv_dir / history_mapping.file if history_mapping is not None else None
    if hist_path is not None and hist_path.exists():
        files.append(hist_path)
    shas = {p: batches.sha256_file(p) for p in files}
    with conn.cursor() as cur:
        known = batches.known_checksums(cur, shas.values())
    conn.commit()
    if all(sha in known for sha in shas.values()):
        return {"status": "skipped", "rows_loaded": 0, "rows_quarantined": 0}
    batch_id, started = uuid.uuid4(), batches.now()
    source = str(path)
    table = sql.Identifier("raw", f"crm_{mapping.object_type}")
    prefix = f"{batch_id}\t{started.isoformat()}\t{copytext.field(source)}\t".encode()
    with tempfile.SpooledTemporaryFile(max_size=4 << 20) as qspool:
        quarantine = batches.Quarantine(batch_id, started, source, qspool)
        history = _read_history(hist_path, history_mapping, quarantine) \
            if hist_path is not None and history_mapping is not None and hist_path in shas else None
        loaded = 0
        with conn.transaction(), conn.cursor() as cur:
            batches.begin_batch(cur, batch_id, source=source, source_kind=SOURCE_KIND, interval_start=None,
                                interval_end=interval_end, started_at=started, sha256=shas[path])
            for p, sha in shas.items():
                batches.claim_file(cur, sha256=sha, path=p, file_date=None, batch_id=batch_id, loaded_at=started)
            rows = _rows(path)
            header = _header(path, rows, mapping)
            builder = _Builder(mapping, header, history) if header else None
            stmt = sql.SQL("COPY {} ({}) FROM STDIN").format(table, sql.SQL(", ").join(map(sql.Identifier,
                                                                                           RAW_COLUMNS)))
            with cur.copy(stmt) as copy:
                for line, row, problem in rows if builder else ():
                    raw = ",".join(row) if row is not None else None
                    if row is None:
                        quarantine.add(line, None, raw, problem or "unreadable CSV row")
                        continue
                    if len(row) != len(header):
                        if len(row) == 1 and row[0] == "":
                            continue  # a blank line
                        quarantine.add(line, None, raw, f"row has {len(row)} fields, the header has {len(header)}")
                        continue
                    if _SURROGATE.search(raw):
                        quarantine.add(line, None, raw.encode("utf-8", "surrogateescape"), "invalid UTF-8")
                        continue
                    record_id, updated, record = builder.build(row)
                    if not record_id:
                        quarantine.add(line, None, raw, f"missing id ({mapping.id_column} is empty)")
                        continue
                    if mapping.updated_at_column and updated is None:
                        quarantine.add(line, record_id, raw, f"unparseable {mapping.updated_at_column}: "
                                       f"{row[builder.upd_i] if builder.upd_i is not None else ''!r}")
                        continue
                    if "\x00" in raw:
                        quarantine.add(line, record_id, raw, "NUL character: PostgreSQL cannot store it")
                        continue
                    copy.write(prefix + copytext.field(record_id).encode() + b"\t"
                               + (updated.isoformat().encode() if updated else copytext.NULL_B)
                               + b"\tf\t" + copytext.escape_bytes(orjson.dumps(record)) + b"\n")
                    loaded += 1
            quarantine.copy_into(cur)
            batches.finish_batch(cur, batch_id, rows_read=loaded + quarantine.count, rows_loaded=loaded,
                                 rows_quarantined=quarantine.count)
    log.info("%s: %d loaded, %d quarantined", path, loaded, quarantine.count)
    return {"status": "loaded", "batch_id": str(batch_id), "rows_loaded": loaded,
            "rows_quarantined": quarantine.count}


def load_crm_csv(conninfo: str, csv_dir: str | os.PathLike, mapping: Mapping[str, Any], *,
                 interval_end: datetime) -> dict:
    """Load every configured object's CSV export from ``csv_dir`` (skipping files already in the ledger)."""
    csv_dir = Path(os.path.expandvars(os.fspath(csv_dir))).expanduser()
    if not csv_dir.is_dir():
        raise LoadError(f"CRM CSV folder {csv_dir} does not exist (crm.csv_dir in config/sources.yml)")
    parsed = sources.parse_csv_mapping(dict(mapping), where="crm.csv_mapping")
    history = parsed.get(HISTORY_OBJECT)
    summary: dict[str, Any] = {"objects": {}, "rows_loaded": 0, "rows_quarantined": 0}
    with psycopg.connect(conninfo) as conn:
        for obj, spec in parsed.items():
            if obj == HISTORY_OBJECT:
                continue
            res = _load_object(conn, csv_dir, spec, history if obj == "contacts" else None, interval_end)
            if res is None:
                continue
            summary["objects"][obj] = res
            summary["rows_loaded"] += res["rows_loaded"]
            summary["rows_quarantined"] += res["rows_quarantined"]
    return summary
