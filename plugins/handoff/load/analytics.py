"""Load the analytics exports (Segment-spec JSONL, optionally gzipped) from the landing folder into
``raw.analytics_events``, with every line that fails validation in ``raw.quarantine``.

Which files (``handoff.load.landing``): every ``.jsonl``/``.ndjson``/``.json`` file, gzipped or not, any letter case,
in a day folder at any depth under the landing folder (``YYYY-MM-DD/``, or Segment's S3/GCS export layout
``segment-logs/<source-id>/<day-as-unix-ms>/<file>.gz``): the interval's day, plus late files in earlier day
folders that were never loaded. Folders of days after the interval are left alone. The checksum ledger
(``ops.file_ledger``, sha256 of the file's bytes) makes a file load once whatever it is called: a renamed or
re-dropped copy is skipped. Every file seen gets one row in ``ops.landing_files``: loaded, loaded with quarantined
lines, rejected or skipped, with the reason (unsupported type, broken link, unreadable, not in a day folder, ...).
An unreadable file (an I/O error, a FIFO, a folder named like a file) is rejected; the other files still load.

One file = one batch = one transaction: the ledger row, the COPY of the events, the COPY of the quarantined lines
and the ``ops.load_log`` row commit together. A crash mid-file (even SIGKILL) leaves nothing behind, and the
rerun loads the file whole.

Rejected files: when a file's quarantined/read share exceeds ``max_bad_share``, nothing of that file is committed
(no events, no quarantine rows, no ledger row); its ``ops.load_log`` row is written with status ``rejected`` (and
its sha256) in a separate transaction, the other files of the run still load, and the call then raises
``BadShareExceeded`` naming every rejected file with its counts and top reasons — the task fails. The file is
retried by every run whose interval covers its day (after someone fixes the file or raises the threshold); the
late-file scan of later runs skips a file whose exact bytes were rejected before (it is reported as
``files_previously_rejected`` in the summary), so one bad file cannot fail every future day.

The modules behind it: ``landing`` finds the files, ``landing_log`` plans what to do with each and records it in
``ops.landing_files``, ``lines`` reads and judges each line (the hot path), and this module copies the events, the
quarantined lines and the batch's ``ops.load_log`` row into the warehouse. Rows go to PostgreSQL through
``COPY ... FROM STDIN`` in ~1 MiB writes; the ``record`` column is the original line bytes (COPY-escaped a whole
buffer at a time), never a re-serialization.
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

import psycopg

from handoff.load import batches, copytext
from handoff.load.batches import LoadError
from handoff.load.landing import SOURCE_KIND
from handoff.load.landing_log import (
    LOADED_OUTCOMES,
    UPSERT_LANDING,
    Planned,
    file_size,
    line_of,
    listed,
    plan,
    record_known_loaded,
    record_loaded,
    record_not_loaded,
    record_stop,
    scan_landing,
    unreadable_reason,
)
from handoff.load.lines import (
    DEFAULT_MAX_FIELD_BYTES,
    DEFAULT_MAX_FUTURE_SKEW_HOURS,
    DEFAULT_MAX_LINE_BYTES,
    LOAD,
    QUARANTINE,
    Limits,
    LineJudge,
    Tail,
    split_lines,
)

log = logging.getLogger(__name__)

EVENT_COLUMNS = ("_batch_id, _loaded_at, _source, _line, message_id, event_type, event_name, anonymous_id, "
                 "user_id, event_at, received_at, record")
MAX_COPY_RETRIES = 20  # rows PostgreSQL itself refuses, quarantined one by one before giving up on a file

_COPY_LINE = re.compile(r"COPY analytics_events, line (\d+)")

_NULL = copytext.NULL


class FilesRejected(LoadError):
    """One or more files were rejected (unreadable, or too many bad lines); the other files of the run loaded."""


class BadShareExceeded(FilesRejected):
    """One or more files had more bad lines than ``max_bad_share`` allows; nothing of them was committed."""


# ---------------------------------------------------------------------------------------------- file reading


# ---------------------------------------------------------------------------------------------- one file

@dataclass
class FileResult:
    path: str
    file_date: str | None
    batch_id: str | None = None
    status: str = "loaded"  # loaded, skipped (already in the ledger), rejected
    rows_read: int = 0
    rows_loaded: int = 0
    rows_quarantined: int = 0
    top_reasons: str = ""
    examples: list[str] = field(default_factory=list)


class _Rejected(Exception):  # noqa: N818 - internal control flow
    reason: str = ""  # the sentence in ops.landing_files (the message names the file and the examples too)


class _AlreadyLoaded(Exception):  # noqa: N818
    pass


class _CopyRefused(Exception):  # noqa: N818
    def __init__(self, written_index: int, message: str) -> None:
        super().__init__(message)
        self.written_index = written_index
        self.message = message


def _copy_file(cur: psycopg.Cursor, path: Path, *, batch_id: uuid.UUID, loaded_at: datetime, source: str,
               judge: LineJudge, quarantine: batches.Quarantine, refused: dict[int, str],
               progress: Callable[[dict], None] | None) -> int:
    """COPY one file's valid lines into raw.analytics_events; quarantine the rest. Returns rows loaded.

    ``refused`` maps valid-line ordinals (1-based, among lines the judge let through) to the reason PostgreSQL
    gave for refusing that row in an earlier attempt; those rows are quarantined instead of sent.
    """
    prefix = f"{batch_id}\t{loaded_at.isoformat()}\t{copytext.field(source)}\t"
    judge_line = judge.judge
    lineno = 0
    valid = 0
    loaded = 0
    refused_next = min(refused) if refused else 0
    limits = judge.limits

    def bad(ln: int, ref: str | None, raw: bytes, reason: str) -> None:
        quarantine.add(ln, ref, raw, reason)

    with cur.copy(f"COPY raw.analytics_events ({EVENT_COLUMNS}) FROM STDIN") as copy:
        for item in split_lines(path, limits.max_line_bytes):
            if isinstance(item, Tail):
                lines = [item.partial] if item.partial.strip() else []
                if item.broken:
                    reason = (f"truncated gzip stream after line {lineno}" if item.broken == "truncated"
                              else f"corrupt gzip stream after line {lineno}: {item.broken[len('corrupt: '):]}")
                    bad(lineno + 1, None, item.partial, reason)
                    lines = []
                if not lines:
                    break
                body = item.partial
            elif len(item) == 3:
                sample, size, _ = item
                lineno += 1
                bad(lineno, None, sample, f"oversized line: {size} bytes > max_line_bytes {limits.max_line_bytes}")
                continue
            else:
                body = item[0]
                lines = body.split(b"\n")
            out: list[bytes] = []
            append = out.append
            for line, eline in zip(lines, copytext.escape_lines(body).split(b"\n"), strict=True):
                lineno += 1
                verdict, payload = judge_line(line)
                if verdict == LOAD:
                    valid += 1
                    if valid == refused_next:
                        bad(lineno, payload[0], line, refused[valid])
                        later = [k for k in refused if k > valid]
                        refused_next = min(later) if later else 0
                        continue
                    mid, typ, name, anon, uid, ts, rcv = payload
                    append(f"{prefix}{lineno}\t{mid}\t{typ}\t{name}\t{anon}\t{uid}\t{ts}\t{rcv}\t".encode())
                    append(eline)
                    append(b"\n")
                    loaded += 1
                elif verdict == QUARANTINE:
                    bad(lineno, payload[1], line, payload[0])
            if out:
                copy.write(b"".join(out))
            if progress is not None:
                progress({"file": source, "lines": lineno, "loaded": loaded, "quarantined": quarantine.count})
    return loaded


def _copy_refusal(exc: psycopg.Error) -> tuple[int, str] | None:
    """The COPY row number and message when PostgreSQL refused one row's data (not a connection problem)."""
    if not isinstance(exc, psycopg.errors.DataError | psycopg.errors.InvalidTextRepresentation):
        return None
    match = _COPY_LINE.search(exc.diag.context or "")
    if not match:
        return None
    return int(match.group(1)), (exc.diag.message_primary or str(exc)).strip()


def load_file(conn: psycopg.Connection, path: Path, *, file_date: date | None, sha256: str,
              interval_start: datetime, interval_end: datetime, max_bad_share: float, limits: Limits,
              progress: Callable[[dict], None] | None = None, relative: str | None = None,
              seen_at: datetime | None = None) -> FileResult:
    """Load one file as one batch in one transaction (with its ``ops.landing_files`` row). Raises ``_Rejected``
    (after recording the rejection) when the bad share is exceeded; returns status 'skipped' when the same bytes
    are already in the ledger. An ``OSError`` while reading the file propagates, nothing of it committed."""
    source = str(path)
    relative = relative or path.name
    result = FileResult(path=source, file_date=file_date.isoformat() if file_date else None)
    refused: dict[int, str] = {}
    while True:
        batch_id = uuid.uuid4()
        started = batches.now()
        judge = LineJudge(interval_end, limits)
        with tempfile.SpooledTemporaryFile(max_size=8 << 20) as spool:
            quarantine = batches.Quarantine(batch_id, started, source, spool)
            try:
                with conn.transaction(), conn.cursor() as cur:
                    batches.begin_batch(cur, batch_id, source=source, source_kind=SOURCE_KIND,
                                        interval_start=interval_start, interval_end=interval_end,
                                        started_at=started, sha256=sha256)
                    if not batches.claim_file(cur, sha256=sha256, path=path, file_date=file_date,
                                              batch_id=batch_id, loaded_at=started, relative=relative):
                        raise _AlreadyLoaded
                    try:
                        loaded = _copy_file(cur, path, batch_id=batch_id, loaded_at=started, source=source,
                                            judge=judge, quarantine=quarantine, refused=refused,
                                            progress=progress)
                    except psycopg.Error as exc:
                        refusal = _copy_refusal(exc)
                        if refusal is None:
                            raise
                        raise _CopyRefused(*refusal) from exc
                    read = loaded + quarantine.count
                    result.rows_read, result.rows_loaded, result.rows_quarantined = read, loaded, quarantine.count
                    result.top_reasons, result.examples = quarantine.top_reasons(), quarantine.examples
                    result.batch_id = str(batch_id)
                    if read and quarantine.count / read > max_bad_share:
                        raise _Rejected
                    quarantine.copy_into(cur)
                    batches.finish_batch(cur, batch_id, rows_read=read, rows_loaded=loaded,
                                         rows_quarantined=quarantine.count)
                    record_loaded(cur, path=path, relative=relative, file_date=file_date, sha256=sha256,
                                  batch_id=batch_id, rows_read=read, rows_loaded=loaded,
                                  rows_quarantined=quarantine.count, at=seen_at or started)
                return result
            except _AlreadyLoaded:
                result.status = "skipped"
                return result
            except _CopyRefused as exc:
                if len(refused) >= MAX_COPY_RETRIES:
                    raise LoadError(f"{path}: PostgreSQL refused more than {MAX_COPY_RETRIES} rows; last: "
                                    f"{exc.message}") from exc
                ordinal = exc.written_index
                for k in sorted(refused):  # COPY row number -> ordinal among valid lines
                    if k <= ordinal:
                        ordinal += 1
                refused[ordinal] = f"refused by PostgreSQL: {exc.message}"
                log.warning("%s: PostgreSQL refused a row (%s); retrying the file with it quarantined", path,
                            exc.message)
            except _Rejected:
                share = result.rows_quarantined / result.rows_read
                error = (f"{path}: {result.rows_quarantined} of {result.rows_read} lines bad ({share:.2%} > "
                         f"max_bad_share {max_bad_share:.2%}); top reasons: {result.top_reasons}; first: "
                         f"{'; '.join(result.examples[:3])}")
                result.status = "rejected"
                reason = (f"too many bad lines: {result.rows_quarantined} of {result.rows_read} ({share:.2%} > "
                          f"max_bad_share {max_bad_share:.2%}); top reasons: {result.top_reasons}")
                with conn.transaction(), conn.cursor() as cur:
                    batches.record_failed_batch(
                        conn, batch_id, source=source, source_kind=SOURCE_KIND,
                        interval_start=interval_start, interval_end=interval_end, started_at=started,
                        status="rejected", error=error, rows_read=result.rows_read, rows_loaded=0,
                        rows_quarantined=result.rows_quarantined, sha256=sha256)
                    at = seen_at or started
                    cur.execute(UPSERT_LANDING, [
                        source, relative, file_date, "rejected", reason, sha256,
                        file_size(path), batch_id, result.rows_read, 0, result.rows_quarantined, at, at, at])
                rejected = _Rejected(error)
                rejected.reason = reason
                raise rejected from None


# ---------------------------------------------------------------------------------------------- the run


def load_analytics_files(conninfo: str, landing_dir: str | os.PathLike, interval_start: datetime,
                         interval_end: datetime, *, max_bad_share: float = 0.01,
                         progress: Callable[[dict], None] | None = None, max_line_bytes: int | None = None,
                         max_field_bytes: int | None = None, max_future_skew_hours: float | None = None) -> dict:
    """Load the interval's analytics files (and late files of earlier days) into raw.analytics_events, and record
    what became of every file seen in ``ops.landing_files``.

    Returns counts (an XCom: no secrets): ``files_loaded``; ``files_skipped`` (already loaded: the same bytes are
    in the ledger); ``files_ignored`` (skipped for a reason: type, link, hidden, no day folder);
    ``files_rejected``; ``files_previously_rejected`` (not retried by the late-file scan); rows
    read/loaded/quarantined; one entry per file loaded (``files``); and ``not_loaded``: every file skipped for a
    reason or rejected, as {path (relative), outcome, reason, since (when that outcome was first recorded, if
    before this run)}. Raises ``FilesRejected``
    (``BadShareExceeded`` when a file had too many bad lines) after the run when a file of the interval, or a file
    never rejected before, was rejected; ``LoadError`` for anything that stops the load.
    """
    limits = Limits(max_line_bytes or DEFAULT_MAX_LINE_BYTES, max_field_bytes or DEFAULT_MAX_FIELD_BYTES,
                    DEFAULT_MAX_FUTURE_SKEW_HOURS if max_future_skew_hours is None else max_future_skew_hours)
    _, entries = scan_landing(landing_dir, interval_start, interval_end)
    summary: dict[str, Any] = {"files_loaded": 0, "files_skipped": 0, "files_rejected": 0,
                               "files_previously_rejected": 0, "files_ignored": 0, "rows_read": 0,
                               "rows_loaded": 0, "rows_quarantined": 0, "files": [], "not_loaded": []}
    failing: list[str] = []
    bad_share = False
    run_at = batches.now()
    with psycopg.connect(conninfo) as conn:
        with conn.cursor() as cur:
            planned = plan(cur, entries)
            record_known_loaded(cur, [p for p in planned if p.action == "already_loaded" and
                                       (p.known is None or p.known[0] not in LOADED_OUTCOMES)], run_at)
            # every entry the run does not load, recorded before any file loads (one statement, one transaction)
            record_not_loaded(cur, [p for p in planned if p.action not in ("load", "already_loaded")], run_at)
        conn.commit()
        for p in planned:
            e = p.entry
            if p.action in ("already_loaded", "duplicate"):
                summary["files_skipped"] += 1
            elif p.action == "previously_rejected":
                summary["files_previously_rejected"] += 1
            elif p.action == "skip":
                summary["files_ignored"] += 1
            elif p.action == "reject":
                summary["files_rejected"] += 1
                if p.known is None or p.known[0] != "rejected" or (e.file_date is not None and not e.late):
                    failing.append(f"{e.relative}: {p.reason}")
            if p.action not in ("load", "already_loaded"):
                summary["not_loaded"].append(listed(p))
        loads = [p for p in planned if p.action == "load"]
        for n, p in enumerate(loads):
            e = p.entry
            log.info("loading %s%s", e.relative, " (late file)" if e.late else "")
            try:
                res = load_file(conn, e.path, file_date=e.file_date, sha256=p.sha256,
                                interval_start=interval_start, interval_end=interval_end,
                                max_bad_share=max_bad_share, limits=limits, progress=progress,
                                relative=e.relative, seen_at=run_at)
            except _Rejected as exc:
                summary["files_rejected"] += 1
                bad_share = True
                failing.append(str(exc))
                summary["not_loaded"].append({"path": e.relative, "outcome": "rejected", "reason": exc.reason,
                                              "since": None})
                log.error("rejected %s", exc)
                continue
            except LoadError as exc:
                record_stop(conn, p, loads[n + 1:], exc, interval_start=interval_start,
                             interval_end=interval_end, run_at=run_at)
                raise
            except OSError as exc:  # the file failed while read: its transaction was rolled back
                failed = Planned(e, "reject", unreadable_reason(exc), p.sha256, p.known)
                summary["files_rejected"] += 1
                failing.append(f"{e.relative}: {failed.reason}")
                with conn.transaction(), conn.cursor() as cur:
                    record_not_loaded(cur, [failed], run_at)
                summary["not_loaded"].append(listed(failed))
                continue
            except Exception as exc:
                record_stop(conn, p, loads[n + 1:], exc, interval_start=interval_start,
                             interval_end=interval_end, run_at=run_at)
                raise LoadError(f"loading {e.path} failed, nothing of it was committed: "
                                f"{type(exc).__name__}: {exc}") from exc
            if res.status == "skipped":
                summary["files_skipped"] += 1
                continue
            summary["files_loaded"] += 1
            for key in ("rows_read", "rows_loaded", "rows_quarantined"):
                summary[key] += getattr(res, key)
            summary["files"].append({"path": res.path, "file_date": res.file_date, "late": e.late,
                                     "batch_id": res.batch_id, "rows_read": res.rows_read,
                                     "rows_loaded": res.rows_loaded, "rows_quarantined": res.rows_quarantined})
            log.info("%s: %d read, %d loaded, %d quarantined", e.relative, res.rows_read, res.rows_loaded,
                     res.rows_quarantined)
    order = {p.entry.relative: i for i, p in enumerate(planned)}
    summary["not_loaded"].sort(key=lambda n: order[n["path"]])  # in the walk's order, like the entries
    if summary["not_loaded"]:
        log.warning("%d file(s) under %s were not loaded (ops.landing_files):\n%s", len(summary["not_loaded"]),
                    landing_dir, "\n".join(line_of(n) for n in summary["not_loaded"]))
    if failing:
        kind = BadShareExceeded if bad_share else FilesRejected
        raise kind(
            f"{len(failing)} analytics file(s) rejected — nothing of them was committed (the other files of the "
            "run were loaded). Fix or replace the file (or raise analytics.max_bad_share in config/sources.yml "
            "for too many bad lines), then rerun the day:\n" + "\n".join(failing))
    return summary
