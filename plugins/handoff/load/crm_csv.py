"""CRM CSV exports into ``raw.crm_<object>``, in the same shape as the API extract.

Each row becomes ``{"id", "properties": {...}, "createdAt", "updatedAt", "archived": false}`` through the
configured mapping (``config/sources.yml`` → ``crm.csv_mapping``): mapped columns become properties (or, for
owners, top-level fields; ``associations.<object>`` columns become ``associations``), and every column the
mapping does not name is kept under ``record.extra`` (label → value), so nothing is lost. Empty cells are null,
as the API returns them. Contacts get ``propertiesWithHistory.lifecyclestage`` (newest first) from the
``lifecycle_stage_history`` export when it is configured and present.

One object = one batch = one transaction, with the checksum ledger: a file whose exact bytes were loaded before
is skipped. The contacts batch is skipped only when both the contacts file and the history file were loaded; when
only one of them is new, only it is claimed in the ledger, and the other is read again: a new contacts export gets
the unchanged history merged, a new history export re-emits the unchanged contacts with it (raw's latest version
of each contact, same updated_at and a later _loaded_at, then carries the new history). The file read again adds
no quarantine rows (the batch that loaded it wrote them) and is not checked against the bad-row share again. Rows
without an id, with an empty or unparseable last-modified date, an unparseable value in any date column, or the
wrong number of fields go to ``raw.quarantine`` (with ``_source`` the file their ``_line`` is in: the history
export's rows under the history file). History rows of a contact the contacts export does not have are merged into
no record: they are counted and logged, and quarantined (reason: the contact id) by the batch that loads the
history file; being well formed, they do not count against ``crm.csv_max_bad_share``.

Rejection (as the analytics loader): when a file's quarantined/read share exceeds ``crm.csv_max_bad_share``,
nothing of its batch is committed (no records, no quarantine rows, no ledger row), its ``ops.load_log`` row is
written with status ``rejected`` (the error names the file, the counts and the top reasons), the other objects
still load, and the call then raises ``CsvRejected`` — the task fails. Because the file is not in the ledger, the
next run loads it once the mapping (or the export) is fixed. A file that cannot be loaded at all — a mapped id or
updated-at column missing, duplicate column names, an encoding other than UTF-8 / UTF-8 with BOM / UTF-16 with
BOM, an empty file — fails the same way with status ``failed``. Every load attempt leaves a load_log row.

Dates: the updated-at/created-at columns, the object's ``date_columns`` and every column mapped to a HubSpot date
property (``sources.is_hubspot_date_property``; in the history export, the column mapped to ``timestamp``) are
parsed with the object's date format (``dates:``, else ``crm.csv_dates``; ISO-8601 in UTC by default) and written
into the record as ISO-8601 UTC with milliseconds (``2026-03-11T14:05:00.000Z``), the API's shape. CSV headers are
data, never SQL: table names come from the fixed object list and reach SQL only through
``psycopg.sql.Identifier``.
"""

from __future__ import annotations

import csv
import logging
import os
import tempfile
import uuid
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
import psycopg
from psycopg import sql

from handoff import sources
from handoff.load import batches, copytext
from handoff.load.batches import LoadError
from handoff.load.crm_csv_reading import DateReader, RecordBuilder, is_blank, read_header, read_history, read_rows
from handoff.sources import HISTORY_OBJECT, CsvDates, CsvObjectMapping

log = logging.getLogger(__name__)

SOURCE_KIND = "crm_csv"
RAW_COLUMNS = ("_batch_id", "_loaded_at", "_source", "record_id", "updated_at", "archived", "record")
DEFAULT_MAX_BAD_SHARE = 0.01
csv.field_size_limit(16 << 20)


class CsvRejected(LoadError):
    """One or more CSV exports had more bad rows than ``crm.csv_max_bad_share`` allows; nothing of them was
    committed and none of them is in the ledger, so a rerun after the fix loads them."""


class _Rejected(Exception):  # noqa: N818 - internal control flow
    pass


class _AlreadyLoaded(Exception):  # noqa: N818
    pass


class _AlreadyQuarantined:
    """The quarantine of a file that is read again beside a new one: its bad rows were quarantined by the batch
    that loaded it, so here they are only counted."""

    count = 0

    def add(self, line: int | None, ref: str | None, raw: bytes | str | None, reason: str) -> None:
        self.count += 1


def _share_problem(path: Path, bad: int, read: int, max_bad_share: float) -> str | None:
    if read and bad / read > max_bad_share:
        return (f"{path}: {bad} of {read} rows bad ({bad / read:.2%} > crm.csv_max_bad_share "
                f"{max_bad_share:.2%})")
    return None


def _load_object(conn: psycopg.Connection, csv_dir: Path, mapping: CsvObjectMapping,
                 history_mapping: CsvObjectMapping | None, interval_end: datetime, *, max_bad_share: float,
                 dates: CsvDates) -> dict[str, Any] | None:
    path = csv_dir / mapping.file
    if not path.exists():
        log.info("%s: no export file, skipped", path)
        return None
    files = [path]
    hist_path = csv_dir / history_mapping.file if history_mapping is not None else None
    if hist_path is not None and hist_path.exists():
        files.append(hist_path)
    try:
        shas = {p: batches.sha256_file(p) for p in files}
    except OSError as exc:
        error = f"{exc.filename or path}: cannot be read: {exc.strerror or exc}"
        batches.record_failure(conn, source=str(path), source_kind=SOURCE_KIND, interval_start=None,
                               interval_end=interval_end, error=error, sha256=None)
        raise LoadError(error) from exc
    with conn.cursor() as cur:
        known = batches.known_checksums(cur, shas.values())
    conn.commit()
    # the files of this batch not in the ledger yet: only they are claimed. An unchanged file beside a new one is
    # read again (its bad rows were quarantined by the batch that loaded it, so they are not quarantined twice,
    # nor counted against crm.csv_max_bad_share again): a new contacts export gets the unchanged history merged,
    # and a new history export re-emits the unchanged contacts with it, so that raw's latest version of each
    # contact (same updated_at, later _loaded_at) carries the new history.
    new = {p: sha for p, sha in shas.items() if sha not in known}
    if not new:
        return {"status": "skipped", "rows_loaded": 0, "rows_quarantined": 0}
    batch_sha = new.get(path) or next(iter(new.values()))
    batch_id, started = uuid.uuid4(), batches.now()
    source = str(path)
    reader = DateReader(mapping.dates or dates)
    table = sql.Identifier("raw", f"crm_{mapping.object_type}")
    prefix = f"{batch_id}\t{started.isoformat()}\t{copytext.field(source)}\t".encode()
    loaded = 0
    with tempfile.SpooledTemporaryFile(max_size=4 << 20) as qspool, \
            tempfile.SpooledTemporaryFile(max_size=4 << 20) as hspool:
        quarantine = batches.Quarantine(batch_id, started, source, qspool)  # the contacts file's rows
        # the history file's rows: _source is the history file, which their _line refers to
        hist_quarantine = batches.Quarantine(batch_id, started, str(hist_path or path), hspool)
        try:
            with conn.transaction(), conn.cursor() as cur:
                batches.begin_batch(cur, batch_id, source=source, source_kind=SOURCE_KIND, interval_start=None,
                                    interval_end=interval_end, started_at=started, sha256=batch_sha)
                for p, sha in new.items():  # False: a concurrent loader claimed it first
                    if not batches.claim_file(cur, sha256=sha, path=p, file_date=None, batch_id=batch_id,
                                              loaded_at=started):
                        raise _AlreadyLoaded
                contacts_q = quarantine if path in new else _AlreadyQuarantined()
                history, hist_read, hist_bad, hist_lines = None, 0, 0, {}
                if hist_path is not None and history_mapping is not None and hist_path in shas:
                    hist_reader = DateReader(history_mapping.dates or dates)
                    history, hist_read, hist_bad, hist_lines = read_history(
                        hist_path, history_mapping, hist_reader,
                        hist_quarantine if hist_path in new else _AlreadyQuarantined())
                    if hist_path not in new:
                        hist_read = hist_bad = 0  # loaded (and its share checked) with an earlier batch
                rows = read_rows(path)
                header = read_header(path, rows, mapping)
                builder = RecordBuilder(mapping, header, history, reader)
                contact_ids: set[str] = set()  # every id in the contacts file (loaded or quarantined)
                stmt = sql.SQL("COPY {} ({}) FROM STDIN").format(
                    table, sql.SQL(", ").join(map(sql.Identifier, RAW_COLUMNS)))
                with cur.copy(stmt) as copy:
                    for line, row, problem in rows:
                        if row is None:
                            contacts_q.add(line, None, None, problem or "unreadable CSV row")
                            continue
                        if len(row) != len(header):
                            if is_blank(row):
                                continue
                            contacts_q.add(line, None, ",".join(row),
                                           f"row has {len(row)} fields, the header has {len(header)}")
                            continue
                        record_id, updated, record = builder.build(row)
                        contact_ids.add(record_id)
                        if not record_id:
                            contacts_q.add(line, None, ",".join(row), f"missing id ({mapping.id_column} is empty)")
                            continue
                        if isinstance(record, str):
                            contacts_q.add(line, record_id, ",".join(row), record)
                            continue
                        if any("\x00" in cell for cell in row):
                            contacts_q.add(line, record_id, ",".join(row), "NUL character: PostgreSQL cannot store it")
                            continue
                        copy.write(prefix + copytext.field(record_id).encode() + b"\t"
                                   + (updated.isoformat().encode() if updated else copytext.NULL_B)
                                   + b"\tf\t" + copytext.escape_bytes(orjson.dumps(record)) + b"\n")
                        loaded += 1
                obj_bad = quarantine.count if path in new else 0
                problems = [p for p in (_share_problem(path, obj_bad, loaded + obj_bad, max_bad_share)
                                        if path in new else None,
                                        _share_problem(hist_path, hist_bad, hist_read, max_bad_share)
                                        if hist_path is not None else None) if p]
                if problems:
                    reasons = hist_quarantine.reasons + quarantine.reasons
                    top = ", ".join(f"{reason} ×{count}" for reason, count in reasons.most_common(3))
                    examples = [*hist_quarantine.examples, *quarantine.examples][:3]
                    raise _Rejected(f"{'; '.join(problems)}; top reasons: {top}; first: {'; '.join(examples)} "
                                    f"(dates read as {reader.describe()})")
                _orphan_history(hist_path, path, hist_lines, contact_ids,
                                hist_quarantine if hist_path in new else None)
                quarantine.copy_into(cur)
                hist_quarantine.copy_into(cur)
                bad = quarantine.count + hist_quarantine.count
                batches.finish_batch(cur, batch_id, rows_read=loaded + bad, rows_loaded=loaded,
                                     rows_quarantined=bad)
        except _AlreadyLoaded:
            return {"status": "skipped", "rows_loaded": 0, "rows_quarantined": 0}
        except _Rejected as exc:
            bad = quarantine.count + hist_quarantine.count
            batches.record_failed_batch(conn, batch_id, source=source, source_kind=SOURCE_KIND, interval_start=None,
                                        interval_end=interval_end, started_at=started, status="rejected",
                                        error=str(exc), rows_read=loaded + bad, rows_loaded=0,
                                        rows_quarantined=bad, sha256=batch_sha)
            raise
        except Exception as exc:
            error = str(exc) if isinstance(exc, LoadError) else f"{type(exc).__name__}: {exc}"
            batches.record_failure(conn, source=source, source_kind=SOURCE_KIND, interval_start=None,
                                   interval_end=interval_end, error=error, sha256=batch_sha, batch_id=batch_id,
                                   started_at=started)
            raise
    if path not in new:
        log.info("%s: new history export %s: the unchanged contacts re-emitted with it", path, hist_path)
    log.info("%s: %d loaded, %d quarantined", path, loaded, bad)
    return {"status": "loaded", "batch_id": str(batch_id), "rows_loaded": loaded, "rows_quarantined": bad}


def _orphan_history(hist_path: Path | None, path: Path, lines: Mapping[str, list[tuple[int, str]]],
                    contact_ids: set[str], quarantine: batches.Quarantine | None) -> int:
    """The history rows of contacts the contacts export does not have are merged into no record: count and log
    them, and quarantine them (reason: the contact id) when the history file is loaded by this batch (``quarantine``
    is None when it was loaded before: its orphans were quarantined then). They do not count against
    ``crm.csv_max_bad_share``: the rows themselves are well formed. Returns their number."""
    orphans = sorted(cid for cid in lines if cid not in contact_ids)
    count = sum(len(lines[cid]) for cid in orphans)
    if not count:
        return 0
    log.warning("%s: %d history row(s) of %d contact(s) not in %s, merged into no contact%s: %s", hist_path, count,
                len(orphans), path.name, " (quarantined)" if quarantine is not None else "",
                ", ".join(orphans[:10]) + (", ..." if len(orphans) > 10 else ""))
    if quarantine is not None and hist_path is not None:
        for cid in orphans:
            for line, raw in lines[cid]:
                quarantine.add(line, cid, raw, f"{hist_path.name}, contact not in {path.name}: {cid!r}, its history "
                                               "row merged into no contact")
    return count


def load_crm_csv(conninfo: str, csv_dir: str | os.PathLike, mapping: Mapping[str, Any], *,
                 interval_end: datetime, max_bad_share: float = DEFAULT_MAX_BAD_SHARE,
                 dates: CsvDates | Mapping[str, Any] | None = None) -> dict:
    """Load every configured object's CSV export from ``csv_dir`` (skipping files already in the ledger).

    ``max_bad_share`` and ``dates`` are ``crm.csv_max_bad_share`` and ``crm.csv_dates`` (an object's own
    ``dates:`` wins). Every object is attempted; afterwards ``CsvRejected`` (only rejections) or ``LoadError``
    (a file could not be loaded) is raised naming each file that was not committed."""
    csv_dates = sources.parse_csv_dates(dates, where="crm.csv_dates") or CsvDates()
    parsed = sources.parse_csv_mapping(dict(mapping), where="crm.csv_mapping", dates=csv_dates)
    csv_dir = Path(os.path.expandvars(os.fspath(csv_dir))).expanduser()
    history = parsed.get(HISTORY_OBJECT)
    summary: dict[str, Any] = {"objects": {}, "rows_loaded": 0, "rows_quarantined": 0}
    rejected: list[str] = []
    failed: list[str] = []
    with psycopg.connect(conninfo) as conn:
        if not csv_dir.is_dir():
            error = f"CRM CSV folder {csv_dir} does not exist (crm.csv_dir in config/sources.yml)"
            batches.record_failure(conn, source=str(csv_dir), source_kind=SOURCE_KIND, interval_start=None,
                                   interval_end=interval_end, error=error, sha256=None)
            raise LoadError(error)
        for obj, spec in parsed.items():
            if obj == HISTORY_OBJECT:
                continue
            try:
                res = _load_object(conn, csv_dir, spec, history if obj == "contacts" else None, interval_end,
                                   max_bad_share=max_bad_share, dates=csv_dates)
            except _Rejected as exc:
                rejected.append(str(exc))
                summary["objects"][obj] = {"status": "rejected", "rows_loaded": 0, "rows_quarantined": 0}
                log.error("rejected %s", exc)
                continue
            except LoadError as exc:
                failed.append(str(exc))
                summary["objects"][obj] = {"status": "failed", "rows_loaded": 0, "rows_quarantined": 0}
                log.error("failed %s", exc)
                continue
            if res is None:
                continue
            summary["objects"][obj] = res
            summary["rows_loaded"] += res["rows_loaded"]
            summary["rows_quarantined"] += res["rows_quarantined"]
    if rejected or failed:
        cls = LoadError if failed else CsvRejected
        raise cls(f"{len(rejected) + len(failed)} CRM CSV export(s) not loaded — nothing of them was committed or "
                  "ledgered (the other objects were loaded). Fix the export or its mapping in config/sources.yml "
                  "(crm.csv_mapping, crm.csv_dates), or raise crm.csv_max_bad_share, then rerun:\n"
                  + "\n".join([*failed, *rejected]))
    return summary
