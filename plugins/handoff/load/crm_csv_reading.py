"""Reading one CRM CSV export into records: its encoding (UTF-8, UTF-8 with BOM, UTF-16 with BOM; anything else is
named with the byte offset and line), its header (the mapped id and updated-at columns present, no duplicate
names), its rows, its dates (``DateReader``: the configured format and time zone, written as ISO-8601 UTC) and the
mapping from columns to the API's record shape (``RecordBuilder``), with the lifecycle-history export merged into
each contact. ``handoff.load.crm_csv`` loads what this module reads.
"""

from __future__ import annotations

import codecs
import csv
import logging
from collections import Counter, defaultdict
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from handoff import sources
from handoff.load.batches import LoadError
from handoff.sources import CsvDates, CsvObjectMapping

log = logging.getLogger(__name__)

EPOCH_MS_MIN_DIGITS = 12  # fewer digits: not epoch milliseconds (12 digits reach back to March 1973)


def iso_utc(dt: datetime) -> str:
    dt = dt.astimezone(UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def numeric_formats(day_first: bool) -> tuple[str, ...]:
    out = []
    for sep in "/.-":
        day = f"%d{sep}%m{sep}%Y" if day_first else f"%m{sep}%d{sep}%Y"
        out += [f"{day} %H:%M", f"{day} %H:%M:%S", f"{day} %I:%M %p", f"{day} %I:%M:%S %p", day]
    return tuple(out)


class DateReader:
    """Parses the date cells of one export as configured (``sources.CsvDates``); naive values are taken in the
    configured time zone. ``parse`` returns None for a value it cannot read."""

    def __init__(self, dates: CsvDates) -> None:
        self.dates = dates
        self.tz = ZoneInfo(dates.timezone)
        if dates.format == "iso":
            self.formats: tuple[str, ...] = ()
        elif dates.format in ("day_first", "month_first"):
            self.formats = numeric_formats(dates.format == "day_first")
        else:
            self.formats = (dates.format,)
        self._last = self.formats[0] if self.formats else ""

    def describe(self) -> str:
        fmt = {"iso": "ISO-8601"}.get(self.dates.format, self.dates.format)
        return f"{fmt}, time zone {self.dates.timezone}"

    def parse(self, value: str) -> datetime | None:
        text = value.strip()
        if not text:
            return None
        dt = self._strptime(text) if self.formats else None
        if dt is None and self.dates.format in ("iso", "day_first", "month_first"):
            try:
                if text.isdigit() and self.dates.format == "iso":
                    # epoch milliseconds, as some exports write them: 12 digits or more (13 from September 2001
                    # on), so that a compact date such as 20260311 is not read as a moment of 1970-01-01
                    if len(text) < EPOCH_MS_MIN_DIGITS:
                        return None
                    return datetime.fromtimestamp(int(text) / 1000, UTC)
                if text[:4].isdigit() and text[4:5] == "-":  # ISO-8601 is unambiguous, whatever the format
                    dt = datetime.fromisoformat(text)
            except (ValueError, OverflowError, OSError):
                return None
        if dt is None:
            return None
        return dt.replace(tzinfo=self.tz) if dt.tzinfo is None else dt

    def _strptime(self, text: str) -> datetime | None:
        # an export writes one format: the last that worked goes first, then each other format once
        for fmt in (self._last, *(f for f in self.formats if f != self._last)):
            try:
                dt = datetime.strptime(text, fmt)
            except ValueError:
                continue
            self._last = fmt
            return dt
        return None


def detect_encoding(path: Path) -> str:
    """The codec of a CSV export from its first bytes: UTF-8 (BOM optional) or UTF-16 with a BOM."""
    with open(path, "rb") as fh:
        head = fh.read(4096)
    if not head:
        raise LoadError(f"{path}: empty file (not even a header row); export the object again")
    if head.startswith((codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)):
        raise LoadError(f"{path}: UTF-32 text (byte-order mark {head[:4].hex(' ')}); handoff reads UTF-8 (with or "
                        "without BOM) and UTF-16 with a BOM: re-export the file as UTF-8")
    if head.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    if head.count(0) * 4 >= len(head):
        raise LoadError(f"{path}: NUL bytes from byte {head.index(0)} on and no byte-order mark: UTF-16 without a "
                        "BOM (or not text); handoff reads UTF-8 (with or without BOM) and UTF-16 with a BOM: "
                        "re-export the file as UTF-8")
    return "utf-8"


def decoding_error(path: Path, encoding: str) -> str:
    """Where the first byte that does not decode is: byte offset, physical line, the bytes and why."""
    bom = {"utf-8-sig": len(codecs.BOM_UTF8), "utf-16": 2}.get(encoding, 0)
    with open(path, "rb") as fh:
        first = fh.read(bom)
        plain = "utf-8" if encoding != "utf-16" else ("utf-16-le" if first == codecs.BOM_UTF16_LE else "utf-16-be")
        decoder = codecs.getincrementaldecoder(plain)("strict")
        offset, newlines = bom, 0
        while True:
            chunk = fh.read(1 << 20)
            pending, _ = decoder.getstate()
            try:
                newlines += decoder.decode(chunk, final=not chunk).count("\n")
            except UnicodeDecodeError as exc:
                at = offset - len(pending) + exc.start
                newlines += exc.object[:exc.start].decode(plain, errors="replace").count("\n")
                bad = exc.object[exc.start:exc.end]
                name = {"utf-8": "UTF-8", "utf-8-sig": "UTF-8", "utf-16": f"UTF-16 ({plain[-2:].upper()})"}[encoding]
                return (f"{path}: not valid {name} at byte {at} (line {newlines + 1}): {bad!r} ({exc.reason}); handoff "
                        "reads UTF-8 (with or without BOM) and UTF-16 with a BOM — an export in another encoding "
                        "(such as Windows-1252) must be re-exported as UTF-8")
            if not chunk:
                return f"{path}: cannot be decoded as {encoding}"
            offset += len(chunk)


def read_rows(path: Path) -> Iterator[tuple[int, list[str] | None, str | None]]:
    """(line number, fields, None) per row, or (line, None, reason) for a row the csv module cannot read.
    A byte that does not decode fails the file (LoadError naming byte offset and line)."""
    encoding = detect_encoding(path)
    with open(path, encoding=encoding, errors="strict", newline="") as fh:
        reader = csv.reader(fh)
        while True:
            try:
                row = next(reader)
            except StopIteration:
                return
            except UnicodeDecodeError:
                raise LoadError(decoding_error(path, encoding)) from None
            except csv.Error as exc:
                yield reader.line_num, None, f"unreadable CSV row: {exc}"
                continue
            yield reader.line_num, row, None


def is_blank(row: list[str]) -> bool:
    return not row or row == [""]


def read_history(path: Path, mapping: CsvObjectMapping, dates: DateReader,
                 quarantine: Any,  # a batches.Quarantine, or a counter for a file read again (crm_csv)
                 ) -> tuple[dict[str, list[dict[str, Any]]], int, int, dict[str, list[tuple[int, str]]]]:
    """The lifecycle-stage history by contact id (newest first), rows read, rows quarantined, and the line and
    text of each contact's history rows (to quarantine those of a contact the contacts export does not have)."""
    history: dict[str, list[dict[str, Any]]] = defaultdict(list)
    lines: dict[str, list[tuple[int, str]]] = defaultdict(list)
    rows = read_rows(path)
    header = read_header(path, rows, mapping)
    index = {label: i for i, label in enumerate(header)}
    date_labels = [label for label in mapping.columns if label in index and mapping.is_date_column(label)]
    read = bad = 0
    for line, row, problem in rows:
        if row is not None and is_blank(row):
            continue
        read += 1
        reason = ""
        if row is None:
            reason = f"{path.name}, {problem}"
        elif len(row) != len(header):
            reason = f"{path.name}, row has {len(row)} fields, the header has {len(header)}"
        elif not row[index[mapping.id_column]].strip():
            reason = f"{path.name}, missing id ({mapping.id_column} is empty)"
        parsed: dict[str, str | None] = {}
        if not reason:
            for label in date_labels:
                value = row[index[label]]
                dt = dates.parse(value)
                if dt is None and value.strip():
                    reason = f"{path.name}, unparseable {label}: {value!r}"
                    break
                parsed[label] = iso_utc(dt) if dt else None
        if reason:
            bad += 1
            quarantine.add(line, None, ",".join(row or []), reason)
            continue
        entry = {name: None for name in sources.HISTORY_FIELDS}
        for label, target in mapping.columns.items():
            if label in index:
                entry[target] = parsed[label] if label in parsed else (row[index[label]] or None)
        contact_id = row[index[mapping.id_column]].strip()
        history[contact_id].append(entry)
        lines[contact_id].append((line, ",".join(row)))
    for entries in history.values():  # newest first, as the API returns them (ISO-8601 UTC sorts as text)
        entries.sort(key=lambda e: e.get("timestamp") or "", reverse=True)
    return history, read, bad, lines


def read_header(path: Path, rows: Iterator, mapping: CsvObjectMapping) -> list[str]:
    """The header row, checked: no duplicate names, the mapped id and updated-at columns present."""
    where = f"crm.csv_mapping.{mapping.object_type}"
    try:
        _, header, problem = next(rows)
    except StopIteration:
        raise LoadError(f"{path}: empty file (not even a header row); export the object again") from None
    if header is None:
        raise LoadError(f"{path}: the header row cannot be read ({problem})")
    header = [h.strip() for h in header]
    dups = [label for label, n in Counter(header).items() if n > 1]
    if dups:
        raise LoadError(f"{path}: duplicate column name(s) in the header: {', '.join(repr(d) for d in dups)} — their "
                        "values would overwrite each other; rename or drop the duplicates in the export")
    for key, label in (("id_column", mapping.id_column), ("updated_at_column", mapping.updated_at_column)):
        if label and label not in header:
            raise LoadError(f"{path}: no column {label!r} ({where}.{key} in config/sources.yml); the header "
                            f"has: {', '.join(repr(h) for h in header[:20])}")
    missing = [label for label in mapping.columns if label not in header]
    if missing:
        log.warning("%s: mapped column(s) not in the file, their properties load as null: %s", path, missing)
    return header


class RecordBuilder:
    """Turns CSV rows of one object into HubSpot-shaped records."""

    def __init__(self, mapping: CsvObjectMapping, header: list[str], history: Mapping[str, list] | None,
                 dates: DateReader) -> None:
        self.mapping = mapping
        self.header = header
        self.history = history
        self.dates = dates
        self.id_i = header.index(mapping.id_column)
        self.upd_i = header.index(mapping.updated_at_column) if mapping.updated_at_column in header else None
        self.crt_i = header.index(mapping.created_at_column) if mapping.created_at_column in header else None
        self.mapped = [(i, mapping.columns[label], mapping.is_date_column(label))
                       for i, label in enumerate(header) if label in mapping.columns]
        special = {mapping.id_column, mapping.updated_at_column, mapping.created_at_column}
        self.extra = [(i, label) for i, label in enumerate(header)
                      if label not in mapping.columns and label not in special]

    def build(self, row: list[str]) -> tuple[str, datetime | None, dict[str, Any] | str]:
        """(record id, updated at, record) — or (record id, None, reason) when a date cell does not parse."""
        record_id = row[self.id_i].strip()
        updated = created = None
        if self.upd_i is not None:
            updated = self.dates.parse(row[self.upd_i])
            if updated is None:
                return record_id, None, f"unparseable {self.header[self.upd_i]}: {row[self.upd_i]!r}"
        if self.crt_i is not None:
            created = self.dates.parse(row[self.crt_i])
            if created is None and row[self.crt_i].strip():
                return record_id, None, f"unparseable {self.header[self.crt_i]}: {row[self.crt_i]!r}"
        fields: dict[str, Any] = {}
        associations: dict[str, Any] = {}
        for i, target, is_date in self.mapped:
            value = row[i] if row[i] != "" else None
            if is_date and value is not None:
                dt = updated if i == self.upd_i else created if i == self.crt_i else self.dates.parse(value)
                if dt is None:
                    if not value.strip():
                        fields[target] = None
                        continue
                    return record_id, None, f"unparseable {self.header[i]}: {value!r}"
                value = iso_utc(dt)
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
        record["createdAt"] = iso_utc(created) if created else None
        record["updatedAt"] = iso_utc(updated) if updated else None
        record["archived"] = False
        if associations:
            record["associations"] = associations
        if self.history is not None:
            record["propertiesWithHistory"] = {"lifecyclestage": self.history.get(record_id, [])}
        if self.extra:
            record["extra"] = {label: row[i] for i, label in self.extra}
        return record_id, updated, record
