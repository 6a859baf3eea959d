"""Reading and judging the lines of an analytics export (Segment-spec JSONL, optionally gzipped): streamed in
~1 MiB chunks, split into lines with a cap on a line's length, and each line classified as an event to load, a line
to quarantine (with the reason) or a blank line, without re-serialising anything. The loader
(``handoff.load.analytics``) copies what this module passes.

Speed: the hot loop is one ``orjson.loads`` per line, a handful of dict lookups and type checks, two
``datetime.fromisoformat`` calls, and an f-string. The per-file set of messageId hashes used for duplicate detection
costs ~60 bytes per line; nothing else grows with the file.
"""

from __future__ import annotations

import gzip
import re
import zlib
from array import array
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

from handoff.load import batches, copytext, landing

_NUL_ESCAPE = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000")
_NULL = copytext.NULL
_as_utc = landing.as_utc
CALL_TYPES = frozenset({"page", "track", "identify", "screen", "group", "alias"})  # the Segment spec's calls


DEFAULT_MAX_LINE_BYTES = 1 << 20


DEFAULT_MAX_FIELD_BYTES = 64 << 10


DEFAULT_MAX_FUTURE_SKEW_HOURS = 24.0


CHUNK_BYTES = 1 << 20


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


BOM = b"\xef\xbb\xbf"


LOAD, QUARANTINE, BLANK = 0, 1, 2


_NAMED_CALLS = frozenset({"page", "screen"})


_fromiso = datetime.fromisoformat


_canonical_ts = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,6})?(?:Z|[+-]\d\d:\d\d)").fullmatch


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


@dataclass
class Tail:
    """The end of the stream: a last line without newline, and/or how the stream broke."""

    partial: bytes = b""
    broken: str | None = None  # "truncated" or "corrupt: <message>"


def read_chunks(path: Path, chunk_bytes: int = CHUNK_BYTES) -> Iterator[bytes | Tail]:
    """The file's (decompressed) bytes in chunks; a final ``Tail`` marks a broken gzip stream."""
    gz = landing.is_gzipped(path)
    with (gzip.open(path, "rb") if gz else open(path, "rb")) as fh:
        read = fh.read1 if gz else fh.read
        while True:
            try:
                chunk = read(chunk_bytes)
            except EOFError:
                yield Tail(broken="truncated")
                return
            except (gzip.BadGzipFile, zlib.error, OSError) as exc:
                if isinstance(exc, OSError) and exc.errno is not None:
                    raise  # the storage failed (EIO, ...), not the gzip stream: the file is rejected, not cut short
                yield Tail(broken=f"corrupt: {exc}")
                return
            if not chunk:
                return
            yield chunk


def split_lines(path: Path, max_line_bytes: int) -> Iterator[tuple[bytes, int] | Tail | tuple[bytes, int, int]]:
    """Whole lines in buffers: yields (buffer of complete lines without the final newline, number of lines),
    (sample, size, -1) for a line longer than ``max_line_bytes`` (never held whole in memory), and a final
    ``Tail`` with the last line if it had no newline and how the stream ended."""
    carry = b""
    skipping = 0  # > 0 while discarding the rest of an oversized line (its size so far)
    sample = b""
    first = True
    for item in read_chunks(path):
        if isinstance(item, Tail):
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
    yield Tail(partial=carry)
