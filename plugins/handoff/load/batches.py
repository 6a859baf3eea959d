"""The load bookkeeping every loader shares: ``ops.load_log`` rows, the file checksum ledger, quarantine COPY.

A batch is one transaction. ``begin_batch`` inserts the batch's load_log row (status ``loading``, invisible until
commit) so the ledger row can reference it at once; ``finish_batch`` sets the counts and status ``loaded``. A batch
that is rejected or fails is rolled back whole; ``record_failed_batch`` then writes its load_log row in a separate
transaction so the failure stays visible in ops.
"""

from __future__ import annotations

import hashlib
import logging
import os
import uuid
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import IO

import psycopg

from handoff.load import copytext

RAW_TEXT_LIMIT = 4096  # characters of an offending line/record kept in raw.quarantine.raw_text
QUARANTINE_COLUMNS = "_batch_id, _loaded_at, _source, _line, record_ref, raw_text, reason"


log = logging.getLogger(__name__)


class LoadError(RuntimeError):
    """A load that must fail the task: the message says which file/object, what was wrong and what to do."""


def sha256_file(path: Path, bufsize: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(bufsize):
            digest.update(chunk)
    return digest.hexdigest()


def now() -> datetime:
    return datetime.now(UTC)


@dataclass
class Quarantine:
    """Quarantine rows of one batch, kept as COPY text in a spooled temp file (bounded memory)."""

    batch_id: uuid.UUID
    loaded_at: datetime
    source: str
    spool: IO[bytes]
    count: int = 0
    reasons: Counter = field(default_factory=Counter)
    examples: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._prefix = f"{self.batch_id}\t{self.loaded_at.isoformat()}\t{copytext.field(self.source)}\t".encode()

    def add(self, line: int | None, ref: str | None, raw: bytes | str | None, reason: str) -> None:
        if isinstance(raw, bytes):
            raw = raw[: RAW_TEXT_LIMIT * 4].decode("utf-8", errors="replace")
        if raw is not None and len(raw) > RAW_TEXT_LIMIT:
            raw = raw[:RAW_TEXT_LIMIT] + "…[truncated]"
        self.count += 1
        # group reasons by their kind (the text before the first colon) for the summary
        self.reasons[reason.split(":", 1)[0]] += 1
        if len(self.examples) < 5:
            self.examples.append(f"line {line}: {reason}" if line is not None else reason)
        self.spool.write(self._prefix)
        self.spool.write(
            ("\t".join((copytext.NULL if line is None else str(line), copytext.field(ref), copytext.field(raw),
                        copytext.field(reason))) + "\n").encode())

    def copy_into(self, cur: psycopg.Cursor, bufsize: int = 1 << 20) -> None:
        if not self.count:
            return
        self.spool.seek(0)
        with cur.copy(f"COPY raw.quarantine ({QUARANTINE_COLUMNS}) FROM STDIN") as copy:
            while chunk := self.spool.read(bufsize):
                copy.write(chunk)

    def top_reasons(self, n: int = 3) -> str:
        return ", ".join(f"{reason} ×{count}" for reason, count in self.reasons.most_common(n))


def begin_batch(cur: psycopg.Cursor, batch_id: uuid.UUID, *, source: str, source_kind: str,
                interval_start: datetime | None, interval_end: datetime | None, started_at: datetime,
                sha256: str | None = None) -> None:
    cur.execute(
        "insert into ops.load_log (batch_id, source, source_kind, data_interval_start, data_interval_end, "
        "started_at, status, sha256) values (%s, %s, %s, %s, %s, %s, 'loading', %s)",
        [batch_id, source, source_kind, interval_start, interval_end, started_at, sha256])


def finish_batch(cur: psycopg.Cursor, batch_id: uuid.UUID, *, rows_read: int, rows_loaded: int,
                 rows_quarantined: int) -> None:
    cur.execute(
        "update ops.load_log set finished_at = clock_timestamp(), rows_read = %s, rows_loaded = %s, "
        "rows_quarantined = %s, status = 'loaded' where batch_id = %s",
        [rows_read, rows_loaded, rows_quarantined, batch_id])


def claim_file(cur: psycopg.Cursor, *, sha256: str, path: Path, file_date: date | None,
               batch_id: uuid.UUID, loaded_at: datetime, relative: str | None = None) -> bool:
    """Insert the file's ledger row inside the batch's transaction. False when the same bytes are already
    loaded (or being loaded by a concurrent loader, which we wait for): the caller rolls back and skips.
    ``relative``: the file's path under the analytics landing folder (its identity wherever it is mounted)."""
    size = os.stat(path).st_size
    row = cur.execute(
        "insert into ops.file_ledger (sha256, path, size_bytes, file_date, batch_id, loaded_at, relative_path) "
        "values (%s, %s, %s, %s, %s, %s, %s) on conflict (sha256) do nothing returning sha256",
        [sha256, str(path), size, file_date, batch_id, loaded_at, relative]).fetchone()
    return row is not None


def record_failed_batch(conn: psycopg.Connection, batch_id: uuid.UUID, *, source: str, source_kind: str,
                        interval_start: datetime | None, interval_end: datetime | None, started_at: datetime,
                        status: str, error: str, rows_read: int = 0, rows_loaded: int = 0,
                        rows_quarantined: int = 0, sha256: str | None = None) -> None:
    """The load_log row of a batch whose own transaction was rolled back (status 'rejected' or 'failed'),
    written in a transaction of its own on the same connection."""
    with conn.transaction():
        conn.execute(
            "insert into ops.load_log (batch_id, source, source_kind, data_interval_start, data_interval_end, "
            "started_at, finished_at, rows_read, rows_loaded, rows_quarantined, status, error, sha256) "
            "values (%s, %s, %s, %s, %s, %s, clock_timestamp(), %s, %s, %s, %s, %s, %s)",
            [batch_id, source, source_kind, interval_start, interval_end, started_at, rows_read, rows_loaded,
             rows_quarantined, status, error, sha256])


def record_failure(conn: psycopg.Connection, *, source: str, source_kind: str, interval_start: datetime | None,
                   interval_end: datetime | None, error: str, sha256: str | None,
                   batch_id: uuid.UUID | None = None, started_at: datetime | None = None) -> None:
    """The 'failed' load_log row of a load that could not be done, in a transaction of its own; best effort: a
    connection already lost writes nothing, and a failure to write is logged, so the caller's own error (the one
    that matters) is what gets raised."""
    try:
        if conn.closed or conn.broken:
            return
        record_failed_batch(conn, batch_id or uuid.uuid4(), source=source, source_kind=source_kind,
                            interval_start=interval_start, interval_end=interval_end,
                            started_at=started_at or now(), status="failed", error=error[:2000], sha256=sha256)
    except psycopg.Error:
        log.exception("could not record the failure of %s in ops.load_log", source)


def known_checksums(cur: psycopg.Cursor, shas: Iterable[str]) -> set[str]:
    rows = cur.execute("select sha256 from ops.file_ledger where sha256 = any(%s)", [list(shas)]).fetchall()
    return {r[0] for r in rows}
