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

Speed: the hot loop is one ``orjson.loads`` per line, a handful of dict lookups and type checks, two
``datetime.fromisoformat`` calls, and an f-string; the ``record`` column is the original line bytes (COPY-escaped a
whole buffer at a time), never a re-serialization. Rows go to PostgreSQL through ``COPY ... FROM STDIN`` in ~1 MiB
writes. Files are streamed in chunks, so memory does not grow with file size — except the per-file set of
messageId hashes used for duplicate detection (~60 bytes per line).
"""

from __future__ import annotations

import gzip
import logging
import os
import re
import stat
import tempfile
import uuid
import zlib
from array import array
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import psycopg

from handoff.load import batches, copytext, landing
from handoff.load.batches import LoadError

log = logging.getLogger(__name__)

SOURCE_KIND = "analytics_file"
EVENT_COLUMNS = ("_batch_id, _loaded_at, _source, _line, message_id, event_type, event_name, anonymous_id, "
                 "user_id, event_at, received_at, record")
CALL_TYPES = frozenset({"page", "track", "identify", "screen", "group", "alias"})  # the Segment spec's calls
DEFAULT_MAX_LINE_BYTES = 1 << 20
DEFAULT_MAX_FIELD_BYTES = 64 << 10
DEFAULT_MAX_FUTURE_SKEW_HOURS = 24.0
CHUNK_BYTES = 1 << 20
MAX_COPY_RETRIES = 20  # rows PostgreSQL itself refuses, quarantined one by one before giving up on a file

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
BOM = b"\xef\xbb\xbf"
_NUL_ESCAPE = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000")
_COPY_LINE = re.compile(r"COPY analytics_events, line (\d+)")

LOAD, QUARANTINE, BLANK = 0, 1, 2
_NAMED_CALLS = frozenset({"page", "screen"})
_NULL = copytext.NULL
_fromiso = datetime.fromisoformat
_canonical_ts = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,6})?(?:Z|[+-]\d\d:\d\d)").fullmatch


class FilesRejected(LoadError):
    """One or more files were rejected (unreadable, or too many bad lines); the other files of the run loaded."""


class BadShareExceeded(FilesRejected):
    """One or more files had more bad lines than ``max_bad_share`` allows; nothing of them was committed."""


class HashSet:
    """A set of 64-bit hashes in one flat array (open addressing, linear probing): ~16-24 bytes per entry
    instead of ~75 for a Python ``set`` of ints. Holds the messageIds of a file for duplicate detection, the one
    piece of the loader's memory that grows with the file (16 MB per million lines). Two different messageIds
    collide with probability 2^-63 per pair."""

    __slots__ = ("mask", "n", "table")

    def __init__(self, bits: int = 16) -> None:
        self.mask = (1 << bits) - 1
        self.table = array("Q", bytes(8 << bits))
        self.n = 0

    def add(self, h: int) -> bool:
        """Add a hash; True when it was already there."""
        h = (h & 0xFFFFFFFFFFFFFFFF) | 1  # 0 marks an empty slot
        table, mask = self.table, self.mask
        i = h & mask
        while True:
            v = table[i]
            if v == 0:
                table[i] = h
                self.n += 1
                if self.n * 2 > mask:
                    self._grow()
                return False
            if v == h:
                return True
            i = (i + 1) & mask

    def _grow(self) -> None:
        old = self.table
        self.mask = self.mask * 2 + 1
        self.table = table = array("Q", bytes(8 * (self.mask + 1)))
        mask = self.mask
        for v in old:
            if v:
                i = v & mask
                while table[i]:
                    i = (i + 1) & mask
                table[i] = v


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _short(value: str, n: int = 64) -> str:
    return repr(value if len(value) <= n else value[:n] + "…")


@dataclass(frozen=True)
class Limits:
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES
    max_field_bytes: int = DEFAULT_MAX_FIELD_BYTES
    max_future_skew_hours: float = DEFAULT_MAX_FUTURE_SKEW_HOURS


class LineJudge:
    """Classifies each line of one file: ``(LOAD, fields)``, ``(QUARANTINE, (reason, record_ref))`` or
    ``(BLANK, None)`` for an empty/whitespace-only line (skipped, not counted). Never raises.

    ``fields`` are COPY-ready text: (message_id, event_type, event_name, anonymous_id, user_id, event_at,
    received_at), NULLs as ``\\N``. A judge holds the file's messageId set: use one judge per file.
    """

    def __init__(self, interval_end: datetime, limits: Limits = Limits()) -> None:
        self.limits = limits
        self.latest = _as_utc(interval_end) + timedelta(hours=limits.max_future_skew_hours)
        self.seen = HashSet()
        self.max_line_bytes = limits.max_line_bytes
        self.max_field_bytes = limits.max_field_bytes

    def judge(self, line: bytes) -> tuple[int, Any]:  # noqa: C901, PLR0911, PLR0912 - the hot path, kept flat
        try:
            if len(line) > self.max_line_bytes:
                return QUARANTINE, (f"oversized line: {len(line)} bytes > max_line_bytes "
                                    f"{self.limits.max_line_bytes}", None)
            try:
                obj = orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                return self._undecodable(line, exc)
            if type(obj) is not dict:
                return QUARANTINE, (f"not a JSON object (got {_json_type(obj)})", None)
            get = obj.get
            mid = get("messageId")
            typ = get("type")
            ts = get("timestamp")
            rcv = get("receivedAt")
            anon = get("anonymousId")
            uid = get("userId")
            if (type(mid) is not str or type(typ) is not str or type(ts) is not str or type(rcv) is not str
                    or not mid or not (anon or uid) or (anon is not None and type(anon) is not str)
                    or (uid is not None and type(uid) is not str)):
                return QUARANTINE, (self._shape_problem(obj), mid if type(mid) is str and mid else None)
            if typ not in CALL_TYPES:
                return QUARANTINE, (f"unknown type: {_short(typ)}", mid)
            if typ == "track":
                name = get("event")
                if type(name) is not str or not name:
                    return QUARANTINE, ("missing key: event (required for track)" if name is None or name == ""
                                        else f"wrong type: event is {_json_type(name)}, expected string", mid)
            elif typ in _NAMED_CALLS:
                name = get("name")
                if type(name) is not str:
                    name = None
            else:
                name = None
            sub = get("properties")
            if sub is not None and type(sub) is not dict:
                return QUARANTINE, (f"wrong type: properties is {_json_type(sub)}, expected object", mid)
            sub = get("context")
            if sub is not None and type(sub) is not dict:
                return QUARANTINE, (f"wrong type: context is {_json_type(sub)}, expected object", mid)
            sub = get("traits")
            if sub is not None and type(sub) is not dict:
                return QUARANTINE, (f"wrong type: traits is {_json_type(sub)}, expected object", mid)
            try:
                ts_at = _fromiso(ts)
            except ValueError:
                return QUARANTINE, (f"unparseable timestamp: {_short(ts)}", mid)
            try:
                rcv_at = _fromiso(rcv)
            except ValueError:
                return QUARANTINE, (f"unparseable receivedAt: {_short(rcv)}", mid)
            if ts_at.tzinfo is None:  # ISO-8601 without an offset: taken as UTC (Segment's exports are UTC)
                ts_at = ts_at.replace(tzinfo=UTC)
            if rcv_at.tzinfo is None:
                rcv_at = rcv_at.replace(tzinfo=UTC)
            if not (EPOCH <= ts_at <= self.latest and EPOCH <= rcv_at <= self.latest):
                return QUARANTINE, (self._out_of_range(ts_at, rcv_at), mid)
            if len(line) > self.max_field_bytes:
                big = _oversized_field(obj, self.limits.max_field_bytes)
                if big:
                    return QUARANTINE, (f"oversized field: {big[0]} is {big[1]} bytes > max_field_bytes "
                                        f"{self.limits.max_field_bytes}", mid)
            escaped = b"\\" in line  # only an escape in the JSON puts a backslash, tab, newline, CR or NUL in a value
            if escaped and b"\\u0000" in line and _NUL_ESCAPE.search(line):
                return QUARANTINE, ("NUL character (\\u0000) in a string: PostgreSQL cannot store it", mid)
            if self.seen.add(hash(mid)):
                return QUARANTINE, ("duplicate messageId within the file", mid)
            # PostgreSQL gets the original text when it is the canonical ISO-8601 form, else Python's reading
            # (fast check for Segment's own form YYYY-MM-DDTHH:MM:SS.mmmZ, which fromisoformat just accepted)
            if not (len(ts) == 24 and ts[23] == "Z" and ts[19] == "." and ts[10] == "T") and not _canonical_ts(ts):
                ts = ts_at.isoformat()
            if not (len(rcv) == 24 and rcv[23] == "Z" and rcv[19] == "." and rcv[10] == "T") \
                    and not _canonical_ts(rcv):
                rcv = rcv_at.isoformat()
            if escaped:
                esc = copytext.escape
                return LOAD, (esc(mid), esc(typ), _NULL if name is None else esc(name),
                              _NULL if anon is None else esc(anon), _NULL if uid is None else esc(uid), ts, rcv)
            return LOAD, (mid, typ, _NULL if name is None else name, _NULL if anon is None else anon,
                          _NULL if uid is None else uid, ts, rcv)
        except Exception as exc:  # noqa: BLE001 - the contract is "never raises": anything odd is quarantined
            return QUARANTINE, (f"unexpected validation error: {type(exc).__name__}: {exc}", None)

    def _out_of_range(self, ts_at: datetime, rcv_at: datetime) -> str:
        for key, value in (("timestamp", ts_at), ("receivedAt", rcv_at)):
            if value < EPOCH:
                return f"{key} before 1970: {value.isoformat()}"
            if value > self.latest:
                return (f"{key} in the future: {value.isoformat()} is more than "
                        f"{self.limits.max_future_skew_hours:g}h after the interval end")
        return "timestamp out of range"

    def _undecodable(self, line: bytes, exc: Exception) -> tuple[int, Any]:
        if not line.strip():
            return BLANK, None
        try:
            line.decode("utf-8")
        except UnicodeDecodeError as uexc:
            return QUARANTINE, (f"invalid UTF-8 at byte {uexc.start}", None)
        return QUARANTINE, (f"malformed JSON: {exc}", None)

    @staticmethod
    def _shape_problem(obj: dict) -> str:
        missing = [k for k in ("messageId", "type", "timestamp", "receivedAt") if obj.get(k) is None
                   or obj.get(k) == ""]
        if obj.get("anonymousId") in (None, "") and obj.get("userId") in (None, ""):
            missing.append("anonymousId or userId")
        if missing:
            return f"missing key{'s' if len(missing) > 1 else ''}: {', '.join(missing)}"
        wrong = [f"{k} is {_json_type(obj[k])}" for k in ("messageId", "type", "timestamp", "receivedAt")
                 if type(obj[k]) is not str]
        wrong += [f"{k} is {_json_type(obj[k])}" for k in ("anonymousId", "userId")
                  if obj.get(k) is not None and type(obj[k]) is not str]
        return f"wrong type: {', '.join(wrong)}, expected string"


def _oversized_field(obj: Any, limit: int, path: str = "") -> tuple[str, int] | None:
    """The first string value (or key) longer than ``limit`` UTF-8 bytes, as (dotted path, size)."""
    if isinstance(obj, str):
        if len(obj) * 4 > limit:
            size = len(obj.encode("utf-8", errors="surrogatepass"))
            if size > limit:
                return path or "(value)", size
        return None
    if isinstance(obj, dict):
        for key, value in obj.items():
            sub = f"{path}.{key}" if path else str(key)
            found = _oversized_field(key, limit, sub + " (key)") or _oversized_field(value, limit, sub)
            if found:
                return found
    elif isinstance(obj, list):
        for i, value in enumerate(obj):
            found = _oversized_field(value, limit, f"{path}[{i}]")
            if found:
                return found
    return None


# ---------------------------------------------------------------------------------------------- file reading

@dataclass
class _Tail:
    """The end of the stream: a last line without newline, and/or how the stream broke."""

    partial: bytes = b""
    broken: str | None = None  # "truncated" or "corrupt: <message>"


def _read_chunks(path: Path, chunk_bytes: int = CHUNK_BYTES) -> Iterator[bytes | _Tail]:
    """The file's (decompressed) bytes in chunks; a final ``_Tail`` marks a broken gzip stream."""
    gz = landing.is_gzipped(path)
    with (gzip.open(path, "rb") if gz else open(path, "rb")) as fh:
        read = fh.read1 if gz else fh.read
        while True:
            try:
                chunk = read(chunk_bytes)
            except EOFError:
                yield _Tail(broken="truncated")
                return
            except (gzip.BadGzipFile, zlib.error, OSError) as exc:
                if isinstance(exc, OSError) and exc.errno is not None:
                    raise  # the storage failed (EIO, ...), not the gzip stream: the file is rejected, not cut short
                yield _Tail(broken=f"corrupt: {exc}")
                return
            if not chunk:
                return
            yield chunk


def _split_lines(path: Path, max_line_bytes: int) -> Iterator[tuple[bytes, int] | _Tail | tuple[bytes, int, int]]:
    """Whole lines in buffers: yields (buffer of complete lines without the final newline, number of lines),
    (sample, size, -1) for a line longer than ``max_line_bytes`` (never held whole in memory), and a final
    ``_Tail`` with the last line if it had no newline and how the stream ended."""
    carry = b""
    skipping = 0  # > 0 while discarding the rest of an oversized line (its size so far)
    sample = b""
    first = True
    for item in _read_chunks(path):
        if isinstance(item, _Tail):
            if skipping:
                yield sample, skipping, -1
                carry = b""
            item.partial = carry
            yield item
            return
        chunk = item
        if first:
            first = False
            if chunk.startswith(BOM):
                chunk = chunk[len(BOM):]
        if skipping:
            cut = chunk.find(b"\n")
            if cut < 0:
                skipping += len(chunk)
                continue
            yield sample, skipping + cut, -1
            skipping, chunk = 0, chunk[cut + 1:]
        data = carry + chunk if carry else chunk
        cut = data.rfind(b"\n")
        if cut < 0:
            carry = data
        else:
            body, carry = data[:cut], data[cut + 1:]
            yield body, body.count(b"\n") + 1
        if len(carry) > max_line_bytes:
            skipping, sample, carry = len(carry), carry[: batches.RAW_TEXT_LIMIT * 4], b""
    if skipping:
        yield sample, skipping, -1
        carry = b""
    yield _Tail(partial=carry)


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
        for item in _split_lines(path, limits.max_line_bytes):
            if isinstance(item, _Tail):
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
                    cur.execute(_UPSERT_LANDING, [
                        source, relative, file_date, "rejected", reason, sha256,
                        _size(path), batch_id, result.rows_read, 0, result.rows_quarantined, at, at, at])
                rejected = _Rejected(error)
                rejected.reason = reason
                raise rejected from None


# ---------------------------------------------------------------------------------------------- the run

_as_utc = landing.as_utc
LOADED_OUTCOMES = ("loaded", "loaded_with_quarantine")
# one row per file, keyed by its path under the landing folder (wherever a worker mounts it): a new outcome (or
# new bytes) replaces the old one and its time; a file still skipped or rejected only has last_seen_at (and path)
# moved on; a file found loaded again writes nothing (the caller does not send it)
_UPSERT_LANDING = """
insert into ops.landing_files (path, relative_path, source_kind, file_date, outcome, reason, sha256, size_bytes,
    batch_id, rows_read, rows_loaded, rows_quarantined, first_seen_at, outcome_at, last_seen_at)
values (%s, %s, 'analytics_file', %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
on conflict (relative_path) do update set
    path = excluded.path, file_date = excluded.file_date, outcome = excluded.outcome,
    reason = excluded.reason, sha256 = excluded.sha256, size_bytes = excluded.size_bytes,
    batch_id = excluded.batch_id, rows_read = excluded.rows_read, rows_loaded = excluded.rows_loaded,
    rows_quarantined = excluded.rows_quarantined,
    outcome_at = case when (landing_files.outcome, landing_files.reason, landing_files.sha256)
                           is not distinct from (excluded.outcome, excluded.reason, excluded.sha256)
                      then landing_files.outcome_at else excluded.outcome_at end,
    last_seen_at = excluded.last_seen_at
"""


@dataclass
class Planned:
    """What a run does with one entry of the landing folder."""

    entry: landing.Entry
    action: str  # load, already_loaded, duplicate, previously_rejected, skip, reject
    reason: str | None = None
    sha256: str | None = None
    known: tuple | None = None  # the file's ops.landing_files row before the run: (outcome, reason, sha256, at)

    @property
    def relative(self) -> str:
        return self.entry.relative

    def describe(self) -> str:
        """One line for ``handoff load analytics --dry-run``."""
        e = self.entry
        if self.action == "load":
            return f"load ({'late file for ' if e.late else ''}{e.file_date})"
        if self.action == "already_loaded":
            return "already loaded (ledger)"
        return f"{self.action if self.action in ('reject', 'later') else 'skip'}: {self.reason}"


def plan(cur: psycopg.Cursor, entries: list[landing.Entry]) -> list[Planned]:
    """Decide every entry (reads the ledger and hashes the files not known loaded; writes nothing)."""
    known = {row[0]: row[1:] for row in cur.execute(
        "select relative_path, outcome, reason, sha256, outcome_at from ops.landing_files "
        "where relative_path = any(%s)", [[e.relative for e in entries]]).fetchall()}
    loadable = [e for e in entries if e.action == landing.LOAD]
    quick_skip = _unchanged_since_loaded(cur, [e for e in loadable if e.late])
    shas: dict[Path, str] = {}
    unreadable: dict[Path, str] = {}
    for e in loadable:
        was = known.get(e.relative)
        if e.path in quick_skip or (e.late and was and was[0] == "rejected" and was[2] is None):
            continue
        try:
            shas[e.path] = batches.sha256_file(e.path)
        except OSError as exc:
            unreadable[e.path] = unreadable_reason(exc)
    ledger = {sha: (path, rel) for sha, path, rel in cur.execute(
        "select sha256, path, relative_path from ops.file_ledger where sha256 = any(%s)",
        [list(shas.values())]).fetchall()}
    rejected_before = {r[0] for r in cur.execute(
        "select distinct sha256 from ops.load_log where status = 'rejected' and sha256 = any(%s)",
        [list(shas.values())]).fetchall()}
    first_of: dict[str, str] = {}
    out: list[Planned] = []
    for e in entries:
        was = known.get(e.relative)
        if e.action != landing.LOAD:
            out.append(Planned(e, e.action, e.reason, known=was))
            continue
        sha = shas.get(e.path)
        if e.path in quick_skip:
            out.append(Planned(e, "already_loaded", sha256=quick_skip[e.path], known=was))
        elif e.path in unreadable:
            out.append(Planned(e, "reject", unreadable[e.path], known=was))
        elif sha is None:  # a late file rejected before as unreadable
            out.append(Planned(e, "previously_rejected", f"rejected before ({was[1]}); not retried by the late-file "
                               f"scan: rerun its own day ({e.file_date}) after fixing it", known=was))
        elif sha in ledger:
            loaded_from, loaded_as = ledger[sha]
            if _same_file(e, loaded_from, loaded_as):
                out.append(Planned(e, "already_loaded", sha256=sha, known=was))
            else:
                out.append(Planned(e, "duplicate", f"same bytes as {loaded_as or loaded_from}, already loaded "
                                   "(ops.file_ledger)", sha, known=was))
        elif sha in first_of:
            out.append(Planned(e, "duplicate", f"same bytes as {first_of[sha]}, loaded from there in this run",
                               sha, known=was))
        elif e.late and sha in rejected_before:
            out.append(Planned(e, "previously_rejected", "rejected before (too many bad lines); not retried by the "
                               f"late-file scan: rerun its own day ({e.file_date}) after fixing it", sha, known=was))
        else:
            first_of[sha] = e.relative
            out.append(Planned(e, "load", sha256=sha, known=was))
    return out


def _same_file(e: landing.Entry, loaded_from: str, loaded_as: str | None) -> bool:
    """Whether the ledger row (path, relative_path) is this landing file: the same path under the landing folder,
    wherever a worker mounts it. A row ledgered before relative_path was recorded (null) is this file when its
    absolute path is this one's, or ends with this one's relative path (the same bytes at the same place under
    another mount)."""
    if loaded_as is not None:
        return loaded_as == e.relative
    return loaded_from == str(e.path) or loaded_from.endswith("/" + e.relative)


def unreadable_reason(exc: OSError) -> str:
    return (f"unreadable: {exc.strerror or exc} ({type(exc).__name__}); nothing of it was loaded — fix the file "
            "or its storage, then rerun its day")


def _unchanged_since_loaded(cur: psycopg.Cursor, late: list[landing.Entry]) -> dict[Path, str]:
    """Late files whose relative path is in the ledger with the same size and that were not modified since they
    were loaded, with the ledgered sha256: skipped without re-hashing (the scan of earlier days stays cheap).
    Ledger rows from before relative_path was recorded match on the absolute path."""
    if not late:
        return {}
    rows = cur.execute(
        "select coalesce(relative_path, path), relative_path is null, size_bytes, sha256, loaded_at "
        "from ops.file_ledger where relative_path = any(%s) or (relative_path is null and path = any(%s)) "
        "order by loaded_at", [[e.relative for e in late], [str(e.path) for e in late]]).fetchall()
    ledger = {(key, legacy, size): (sha, loaded_at) for key, legacy, size, sha, loaded_at in rows}  # the latest
    skip = {}
    for e in late:
        try:
            st = e.path.stat()
        except OSError:
            continue  # hashing it says what is wrong
        found = ledger.get((e.relative, False, st.st_size)) or ledger.get((str(e.path), True, st.st_size))
        if found is not None and datetime.fromtimestamp(st.st_mtime, UTC) < found[1]:
            skip[e.path] = found[0]
    return skip


def scan_landing(landing_dir: str | os.PathLike, interval_start: datetime, interval_end: datetime, *,
                 include_later: bool = False) -> tuple[Path, list[landing.Entry]]:
    path = Path(os.path.expandvars(os.fspath(landing_dir))).expanduser()
    if not path.is_dir():
        raise LoadError(f"analytics landing folder {path} does not exist (set analytics.landing in "
                        "config/sources.yml, or HANDOFF_HOME)")
    return path, landing.scan(path, interval_start, interval_end, include_later=include_later)


def dry_run(conninfo: str, landing_dir: str | os.PathLike, interval_start: datetime,
            interval_end: datetime) -> list[Planned]:
    """What ``load_analytics_files`` would do with every file under the landing folder, in a read-only
    transaction (nothing is written; files are read to hash them)."""
    _, entries = scan_landing(landing_dir, interval_start, interval_end, include_later=True)
    with psycopg.connect(conninfo) as conn:
        conn.read_only = True
        with conn.cursor() as cur:
            planned = plan(cur, entries)
        conn.rollback()
    return planned


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
            _record_known_loaded(cur, [p for p in planned if p.action == "already_loaded" and
                                       (p.known is None or p.known[0] not in LOADED_OUTCOMES)], run_at)
            # every entry the run does not load, recorded before any file loads (one statement, one transaction)
            _record_not_loaded(cur, [p for p in planned if p.action not in ("load", "already_loaded")], run_at)
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
                summary["not_loaded"].append(_listed(p))
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
                _record_stop(conn, p, loads[n + 1:], exc, interval_start=interval_start,
                             interval_end=interval_end, run_at=run_at)
                raise
            except OSError as exc:  # the file failed while read: its transaction was rolled back
                failed = Planned(e, "reject", unreadable_reason(exc), p.sha256, p.known)
                summary["files_rejected"] += 1
                failing.append(f"{e.relative}: {failed.reason}")
                with conn.transaction(), conn.cursor() as cur:
                    _record_not_loaded(cur, [failed], run_at)
                summary["not_loaded"].append(_listed(failed))
                continue
            except Exception as exc:
                _record_stop(conn, p, loads[n + 1:], exc, interval_start=interval_start,
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
                    landing_dir, "\n".join(_line_of(n) for n in summary["not_loaded"]))
    if failing:
        kind = BadShareExceeded if bad_share else FilesRejected
        raise kind(
            f"{len(failing)} analytics file(s) rejected — nothing of them was committed (the other files of the "
            "run were loaded). Fix or replace the file (or raise analytics.max_bad_share in config/sources.yml "
            "for too many bad lines), then rerun the day:\n" + "\n".join(failing))
    return summary


def _line_of(item: dict) -> str:
    since = f" (since {item['since'][:10]})" if item.get("since") else ""
    return f"  {item['outcome']}: {item['path']}: {item['reason']}{since}"


def _outcome(p: Planned) -> str:
    return "rejected" if p.action in ("reject", "previously_rejected") else "skipped"


def _listed(p: Planned) -> dict:
    """The file's entry in the summary's ``not_loaded``; ``since`` when the outcome is the one already recorded."""
    outcome = _outcome(p)
    unchanged = p.known is not None and (p.action == "previously_rejected" or
                                         (p.known[0], p.known[1]) == (outcome, p.reason))
    return {"path": p.entry.relative, "outcome": outcome, "reason": p.reason,
            "since": p.known[3].isoformat() if unchanged and p.known[3] else None}


def _record_not_loaded(cur: psycopg.Cursor, planned: list[Planned], run_at: datetime) -> None:
    """Record files skipped or rejected, all in the caller's transaction: one upsert statement for all of them (a
    row is rewritten only if the outcome changed, else its last_seen_at moves on) and one update of last_seen_at
    for the files rejected before and not retried."""
    again = [p.entry.relative for p in planned if p.action == "previously_rejected"]
    rows = [[str(p.entry.path), p.entry.relative, p.entry.file_date, _outcome(p), p.reason, p.sha256,
             _size(p.entry.path), None, 0, 0, 0, run_at, run_at, run_at]
            for p in planned if p.action != "previously_rejected"]
    if again:
        cur.execute("update ops.landing_files set last_seen_at = %s where relative_path = any(%s)", [run_at, again])
    if rows:
        cur.executemany(_UPSERT_LANDING, rows)


def _size(path: Path) -> int | None:
    """The file's size; None for what is not a regular file (a folder, a FIFO, a broken link)."""
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_size if stat.S_ISREG(st.st_mode) else None


def _record_known_loaded(cur: psycopg.Cursor, planned: list[Planned], run_at: datetime) -> None:
    """Files found loaded (by the ledger) with no loaded row in ops.landing_files yet — loaded before that table
    existed, or after an earlier outcome: their row, from the ledger row of their bytes and the batch that loaded
    them (``path`` is where that batch read the file)."""
    if not planned:
        return
    cur.execute(
        """insert into ops.landing_files (path, relative_path, source_kind, file_date, outcome, reason, sha256,
                size_bytes, batch_id, rows_read, rows_loaded, rows_quarantined, first_seen_at, outcome_at,
                last_seen_at)
            select l.path, r.rel, 'analytics_file', l.file_date,
                   case when b.rows_quarantined > 0 then 'loaded_with_quarantine' else 'loaded' end,
                   case when b.rows_quarantined > 0 then b.rows_quarantined || ' of ' || b.rows_read
                        || ' lines quarantined (raw.quarantine)' end,
                   l.sha256, l.size_bytes, l.batch_id, b.rows_read, b.rows_loaded, b.rows_quarantined,
                   %s, l.loaded_at, %s
            from ops.file_ledger l join ops.load_log b using (batch_id)
            join unnest(%s::text[], %s::text[]) as r(sha256, rel) on r.sha256 = l.sha256
            on conflict (relative_path) do update set
                path = excluded.path, file_date = excluded.file_date, outcome = excluded.outcome,
                reason = excluded.reason, sha256 = excluded.sha256, size_bytes = excluded.size_bytes,
                batch_id = excluded.batch_id, rows_read = excluded.rows_read, rows_loaded = excluded.rows_loaded,
                rows_quarantined = excluded.rows_quarantined, outcome_at = excluded.outcome_at,
                last_seen_at = excluded.last_seen_at""",
        [run_at, run_at, [p.sha256 for p in planned], [p.entry.relative for p in planned]])


def record_loaded(cur: psycopg.Cursor, *, path: Path, relative: str, file_date: date | None, sha256: str,
                  batch_id: uuid.UUID, rows_read: int, rows_loaded: int, rows_quarantined: int,
                  at: datetime) -> None:
    """The file's ops.landing_files row for a batch just loaded (in the batch's transaction)."""
    outcome = "loaded_with_quarantine" if rows_quarantined else "loaded"
    reason = f"{rows_quarantined} of {rows_read} lines quarantined (raw.quarantine)" if rows_quarantined else None
    cur.execute(_UPSERT_LANDING, [str(path), relative, file_date, outcome, reason, sha256, _size(path), batch_id,
                                  rows_read, rows_loaded, rows_quarantined, at, at, at])


def problems_since(conninfo: str, since: datetime) -> list[tuple[str, str, str, datetime]]:
    """(relative path, outcome, reason, outcome_at) of every file a run since ``since`` skipped or rejected."""
    with psycopg.connect(conninfo) as conn:
        return conn.execute(
            "select relative_path, outcome, reason, outcome_at from ops.landing_files "
            "where outcome in ('skipped', 'rejected') and last_seen_at >= %s order by outcome, relative_path",
            [since]).fetchall()


def _record_stop(conn: psycopg.Connection, failed: Planned, not_reached: list[Planned], exc: Exception, *,
                 interval_start: datetime, interval_end: datetime, run_at: datetime) -> None:
    """A load that stops the run: the failing file's ops.load_log row (status failed), then in one transaction its
    ops.landing_files row (rejected, the error as the reason) and a row for each file the run had still to load
    (skipped: not reached), so every file seen has its row. Best effort: the caller raises the error anyway."""
    e = failed.entry
    _record_failure(conn, e.path, failed.sha256, interval_start=interval_start, interval_end=interval_end, exc=exc)
    error = f"{type(exc).__name__}: {exc}"[:2000]
    rows = [Planned(e, "reject", f"load failed, nothing of it was committed: {error}; the run stopped here, the "
                    "next run tries it again", failed.sha256, failed.known)]
    rows += [Planned(p.entry, "skip", f"not loaded: the run stopped at {e.relative} (a load failed: "
                     f"{type(exc).__name__}) before reaching it; the next run loads it", p.sha256, p.known)
             for p in not_reached]
    try:
        if conn.closed or conn.broken:
            return
        with conn.transaction(), conn.cursor() as cur:
            _record_not_loaded(cur, rows, run_at)
    except psycopg.Error:
        log.exception("could not record in ops.landing_files that loading %s failed", e.relative)


def _record_failure(conn: psycopg.Connection, path: Path, sha: str | None, *, interval_start: datetime,
                    interval_end: datetime, exc: Exception) -> None:
    try:
        if conn.closed or conn.broken:
            return
        batches.record_failed_batch(conn, uuid.uuid4(), source=str(path), source_kind=SOURCE_KIND,
                                    interval_start=interval_start, interval_end=interval_end,
                                    started_at=batches.now(), status="failed",
                                    error=f"{type(exc).__name__}: {exc}"[:2000], sha256=sha)
    except psycopg.Error:
        log.exception("could not record the failure of %s in ops.load_log", path)
