"""Load the analytics exports (Segment-spec JSONL, optionally gzipped) from the landing folder into
``raw.analytics_events``, with every line that fails validation in ``raw.quarantine``.

Which files: the day folders (``landing/YYYY-MM-DD/*.jsonl[.gz]``) that overlap the data interval, plus late files
in earlier day folders that were never loaded. Folders of days after the interval are left alone. The checksum
ledger (``ops.file_ledger``, sha256 of the file's bytes) makes a file load once whatever it is called: a renamed or
re-dropped copy is skipped.

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

from handoff.load import batches, copytext
from handoff.load.batches import LoadError

log = logging.getLogger(__name__)

SOURCE_KIND = "analytics_file"
EVENT_COLUMNS = ("_batch_id, _loaded_at, _source, _line, message_id, event_type, event_name, anonymous_id, "
                 "user_id, event_at, received_at, record")
CALL_TYPES = frozenset({"page", "track", "identify", "screen", "group", "alias"})  # the Segment spec's calls
FILE_SUFFIXES = (".jsonl", ".jsonl.gz", ".ndjson", ".ndjson.gz")
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


class BadShareExceeded(LoadError):
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
    gz = path.name.endswith(".gz")
    with (gzip.open(path, "rb") if gz else open(path, "rb")) as fh:
        read = fh.read1 if gz else fh.read
        while True:
            try:
                chunk = read(chunk_bytes)
            except EOFError:
                yield _Tail(broken="truncated")
                return
            except (gzip.BadGzipFile, zlib.error, OSError) as exc:
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
    pass


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
              progress: Callable[[dict], None] | None = None) -> FileResult:
    """Load one file as one batch in one transaction. Raises ``_Rejected`` (after recording the rejection) when
    the bad share is exceeded; returns status 'skipped' when the same bytes are already in the ledger."""
    source = str(path)
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
                                              batch_id=batch_id, loaded_at=started):
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
                batches.record_failed_batch(
                    conn, batch_id, source=source, source_kind=SOURCE_KIND,
                    interval_start=interval_start, interval_end=interval_end, started_at=started,
                    status="rejected", error=error, rows_read=result.rows_read, rows_loaded=0,
                    rows_quarantined=result.rows_quarantined, sha256=sha256)
                raise _Rejected(error) from None


# ---------------------------------------------------------------------------------------------- the run

@dataclass(frozen=True)
class Candidate:
    path: Path
    file_date: date
    late: bool  # in a day folder before the interval


def _as_utc(value: datetime) -> datetime:
    """A stdlib UTC datetime (naive = UTC). Not ``astimezone``: pendulum 3 returns a naive value from it."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return datetime.fromtimestamp(value.timestamp(), tz=UTC)


def discover(landing: Path, interval_start: datetime, interval_end: datetime) -> list[Candidate]:
    """The files the run considers, oldest day first: the interval's day folders and every earlier one
    (late files). Day folders at or after the interval end are not looked at."""
    start, end = _as_utc(interval_start), _as_utc(interval_end)
    found: list[Candidate] = []
    if not landing.is_dir():
        raise LoadError(f"analytics landing folder {landing} does not exist (set analytics.landing in "
                        "config/sources.yml, or HANDOFF_HOME)")
    for folder in sorted(landing.iterdir()):
        try:
            day = date.fromisoformat(folder.name)
        except ValueError:
            continue
        if not folder.is_dir() or len(folder.name) != 10:
            continue
        day_start = datetime(day.year, day.month, day.day, tzinfo=UTC)
        if day_start >= end:
            continue  # a day after the interval: its own run loads it
        late = day_start + timedelta(days=1) <= start
        for path in sorted(folder.iterdir()):
            if path.is_file() and path.name.endswith(FILE_SUFFIXES) and not path.name.startswith("."):
                found.append(Candidate(path, day, late))
    return found


def _unchanged_since_loaded(cur: psycopg.Cursor, candidates: list[Candidate]) -> set[Path]:
    """Late candidates whose path is in the ledger with the same size and that were not modified since they
    were loaded: skipped without re-hashing (the scan of earlier days stays cheap)."""
    late = [c for c in candidates if c.late]
    if not late:
        return set()
    rows = cur.execute("select path, size_bytes, max(loaded_at) from ops.file_ledger where path = any(%s) "
                       "group by path, size_bytes", [[str(c.path) for c in late]]).fetchall()
    ledger = {(p, size): loaded_at for p, size, loaded_at in rows}
    skip = set()
    for c in late:
        st = c.path.stat()
        loaded_at = ledger.get((str(c.path), st.st_size))
        if loaded_at is not None and datetime.fromtimestamp(st.st_mtime, UTC) < loaded_at:
            skip.add(c.path)
    return skip


def load_analytics_files(conninfo: str, landing: str | os.PathLike, interval_start: datetime,
                         interval_end: datetime, *, max_bad_share: float = 0.01,
                         progress: Callable[[dict], None] | None = None, max_line_bytes: int | None = None,
                         max_field_bytes: int | None = None, max_future_skew_hours: float | None = None) -> dict:
    """Load the interval's analytics files (and late files of earlier days) into raw.analytics_events.

    Returns counts (an XCom: no secrets): files loaded/skipped/rejected, rows read/loaded/quarantined, and one
    entry per file loaded. Raises ``BadShareExceeded`` after the run when any file was rejected, and
    ``LoadError`` for anything that stops the load (the failed file's load_log row says what).
    """
    landing = Path(os.path.expandvars(os.fspath(landing))).expanduser()
    limits = Limits(max_line_bytes or DEFAULT_MAX_LINE_BYTES, max_field_bytes or DEFAULT_MAX_FIELD_BYTES,
                    DEFAULT_MAX_FUTURE_SKEW_HOURS if max_future_skew_hours is None else max_future_skew_hours)
    candidates = discover(landing, interval_start, interval_end)
    summary: dict[str, Any] = {"files_loaded": 0, "files_skipped": 0, "files_rejected": 0,
                               "files_previously_rejected": 0, "rows_read": 0, "rows_loaded": 0,
                               "rows_quarantined": 0, "files": []}
    rejected: list[str] = []
    with psycopg.connect(conninfo) as conn:
        with conn.cursor() as cur:
            quick_skip = _unchanged_since_loaded(cur, candidates)
            todo = [c for c in candidates if c.path not in quick_skip]
            shas = {c.path: batches.sha256_file(c.path) for c in todo}
            in_ledger = batches.known_checksums(cur, shas.values())
            rejected_before = {r[0] for r in cur.execute(
                "select distinct sha256 from ops.load_log where status = 'rejected' and sha256 = any(%s)",
                [list(shas.values())]).fetchall()}
        conn.commit()
        summary["files_skipped"] += len(quick_skip)
        seen_this_run: set[str] = set()
        for cand in todo:
            sha = shas[cand.path]
            if sha in in_ledger or sha in seen_this_run:
                summary["files_skipped"] += 1
                continue
            if cand.late and sha in rejected_before:
                summary["files_previously_rejected"] += 1
                log.warning("%s was rejected before (too many bad lines); not retried by the late-file scan: "
                            "rerun its own day (%s) after fixing it", cand.path, cand.file_date)
                continue
            seen_this_run.add(sha)
            log.info("loading %s%s", cand.path, " (late file)" if cand.late else "")
            try:
                res = load_file(conn, cand.path, file_date=cand.file_date, sha256=sha,
                                interval_start=interval_start, interval_end=interval_end,
                                max_bad_share=max_bad_share, limits=limits, progress=progress)
            except _Rejected as exc:
                summary["files_rejected"] += 1
                rejected.append(str(exc))
                log.error("rejected %s", exc)
                continue
            except LoadError:
                raise
            except Exception as exc:
                _record_failure(conn, cand.path, sha, interval_start=interval_start, interval_end=interval_end, exc=exc)
                raise LoadError(f"loading {cand.path} failed, nothing of it was committed: "
                                f"{type(exc).__name__}: {exc}") from exc
            if res.status == "skipped":
                summary["files_skipped"] += 1
                continue
            summary["files_loaded"] += 1
            for key in ("rows_read", "rows_loaded", "rows_quarantined"):
                summary[key] += getattr(res, key)
            summary["files"].append({"path": res.path, "file_date": res.file_date, "late": cand.late,
                                     "batch_id": res.batch_id, "rows_read": res.rows_read,
                                     "rows_loaded": res.rows_loaded, "rows_quarantined": res.rows_quarantined})
            log.info("%s: %d read, %d loaded, %d quarantined", cand.path, res.rows_read, res.rows_loaded,
                     res.rows_quarantined)
    if rejected:
        raise BadShareExceeded(
            f"{len(rejected)} analytics file(s) rejected — nothing of them was committed (the other files of the "
            "run were loaded). Fix or replace the file, or raise analytics.max_bad_share in config/sources.yml, "
            "then rerun the day:\n" + "\n".join(rejected))
    return summary


def _record_failure(conn: psycopg.Connection, path: Path, sha: str, *, interval_start: datetime,
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
