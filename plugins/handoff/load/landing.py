"""The analytics landing folder, walked: every entry under it with what a run does with it. Reads no file's
contents and touches no database (``analytics`` decides the rest: already loaded, same bytes as another file).

Which files load: names ending ``.jsonl``, ``.ndjson`` or ``.json``, each optionally followed by ``.gz``, in any
letter case, in a day folder at any depth:

- ``YYYY-MM-DD/`` (the sample's and today's layout), files directly in it or in sub-folders of it;
- Segment's S3/GCS export layout ``segment-logs/<source-id>/<day-as-unix-ms>/<file>.gz``: a folder named with 13
  digits is Segment's received-day (the UTC day's start in unix milliseconds); its day is the UTC date of that
  instant. Segment names its files ``<something>.gz`` with no JSON suffix, so in such a folder any ``*.gz`` loads.

The nearest day folder above a file gives its day. Day folders whose day starts at or after the run's interval end
are not walked (their own run sees them). Everything else that is seen gets an outcome with a reason:

- skipped: a hidden entry (name starts with ``.``; a hidden folder is not walked), an unsupported type, a file
  outside any day folder, a broken symbolic link, a link back to a folder already walked;
- rejected (unreadable): a folder named like a data file (``x.jsonl/``, not walked), something that is not a
  regular file (a FIFO, a socket, a device), a folder that cannot be listed. A file that fails when it is read is
  rejected by the loader.
"""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

SOURCE_KIND = "analytics_file"  # ops.load_log.source_kind (and ops.landing_files.source_kind) of a file batch
DATA_SUFFIXES = (".jsonl", ".ndjson", ".json")
GZIP_SUFFIX = ".gz"
LOAD, SKIP, REJECT, LATER = "load", "skip", "reject", "later"
_DAY_FOLDER = re.compile(r"\d{4}-\d\d-\d\d").fullmatch
_SEGMENT_DAY_FOLDER = re.compile(r"\d{13}").fullmatch  # Segment's <day-as-unix-ms>
_KINDS = {stat.S_IFIFO: "a FIFO (named pipe)", stat.S_IFSOCK: "a socket", stat.S_IFCHR: "a character device",
          stat.S_IFBLK: "a block device"}


@dataclass(frozen=True)
class Entry:
    """One thing found under the landing folder."""

    path: Path  # as found (links not resolved)
    relative: str  # POSIX path under the landing folder; a folder ends with "/"
    action: str  # load, skip, reject; later (a day after the interval, listed only when asked)
    reason: str | None = None
    file_date: date | None = None
    late: bool = False  # a loadable file of a day before the run's interval

    @property
    def gzipped(self) -> bool:
        return is_gzipped(self.path)


def is_gzipped(path: Path) -> bool:
    return path.name.lower().endswith(GZIP_SUFFIX)


def is_data_name(name: str, *, segment_folder: bool = False) -> bool:
    """A name the loader reads as JSONL: .jsonl/.ndjson/.json, gzipped or not, any case (any .gz in a Segment
    received-day folder)."""
    low = name.lower()
    if low.endswith(GZIP_SUFFIX):
        if segment_folder:
            return True
        low = low[: -len(GZIP_SUFFIX)]
    return low.endswith(DATA_SUFFIXES)


def folder_day(name: str) -> tuple[date, str] | None:
    """The day a folder stands for, and its layout ('YYYY-MM-DD' or 'segment'), or None."""
    if _DAY_FOLDER(name):
        try:
            return date.fromisoformat(name), "YYYY-MM-DD"
        except ValueError:
            return None
    if _SEGMENT_DAY_FOLDER(name):
        return datetime.fromtimestamp(int(name) / 1000, UTC).date(), "segment"
    return None


def _unsupported(name: str, segment_folder: bool) -> str:
    low = name.lower()
    suffixes = "".join(Path(low).suffixes[-2:]) or "(no extension)"
    if low.endswith(GZIP_SUFFIX) and not segment_folder:
        return (f"unsupported type: {suffixes} (a .gz loads when it is *.jsonl.gz, *.ndjson.gz or *.json.gz, or "
                "when it sits in a Segment <day-as-unix-ms>/ folder)")
    return f"unsupported type: {suffixes} (loads .jsonl, .ndjson and .json files, gzipped or not)"


def scan(landing: Path, interval_start: datetime, interval_end: datetime, *, include_later: bool = False
         ) -> list[Entry]:
    """Every entry under ``landing`` (sorted by relative path) with what a run for the interval does with it.
    Day folders at or after the interval's end are left out, or with ``include_later`` listed as ``later``."""
    start, end = as_utc(interval_start), as_utc(interval_end)
    out: list[Entry] = []
    walked: set[tuple[int, int]] = set()

    def day_start(day: date) -> datetime:
        return datetime(day.year, day.month, day.day, tzinfo=UTC)

    def descend(path: Path, rel: str, parent_day: date | None, day: date | None, *, segment: bool,
                later: bool = False) -> None:
        """Walk a sub-folder unless it is one already walked (a link back up: a loop), for both walks."""
        try:
            st = path.stat()
            if (st.st_dev, st.st_ino) in walked:
                out.append(Entry(path, rel + "/", SKIP, "link to a folder already looked into (a loop)", parent_day))
                return
        except OSError:
            pass  # walk() reports it
        walk(path, rel + "/", day, segment, later)

    def walk(folder: Path, prefix: str, day: date | None, segment: bool, later: bool = False) -> None:
        try:
            st = folder.stat()
            walked.add((st.st_dev, st.st_ino))
            with os.scandir(folder) as it:
                children = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            out.append(Entry(folder, prefix or "./", REJECT, f"unreadable folder: {_oserror(exc)}; nothing under "
                             "it was looked at"))
            return
        for child in children:
            rel = prefix + child.name
            path = Path(child.path)
            if later:
                if _is_dir(child):
                    descend(path, rel, day, day, segment=segment, later=True)
                else:
                    out.append(Entry(path, rel, LATER, f"its day ({day}) is after this run's interval: the run for "
                                     "that day looks at it", day))
                continue
            if child.name.startswith("."):
                is_dir = _is_dir(child)
                out.append(Entry(path, rel + ("/" if is_dir else ""), SKIP,
                                 "hidden folder (name starts with '.'): not looked into" if is_dir
                                 else "hidden file (name starts with '.')", day))
                continue
            if _is_dir(child):
                found = folder_day(child.name)
                if found and day_start(found[0]) >= end:
                    if include_later:  # a day at or after the interval's end: its own run loads it
                        descend(path, rel, day, found[0], segment=found[1] == "segment", later=True)
                    continue
                if is_data_name(child.name):
                    out.append(Entry(path, rel + "/", REJECT, "unreadable: a folder named like a data file; not "
                                     "loaded and not looked into (rename it, or move its files into a day folder)",
                                     day, _late(day, start)))
                    continue
                descend(path, rel, day, found[0] if found else day,
                        segment=found[1] == "segment" if found else segment)
                continue
            out.append(_file_entry(child, path, rel, day, segment=segment, start=start))
    if not landing.is_dir():
        raise FileNotFoundError(landing)
    walk(landing, "", None, False)
    return out


def _file_entry(child: os.DirEntry, path: Path, rel: str, day: date | None, *, segment: bool,
                start: datetime) -> Entry:
    try:
        st = path.stat()
    except OSError as exc:
        if child.is_symlink():
            try:
                target = os.readlink(path)
            except OSError:
                target = "?"
            why = "does not exist" if isinstance(exc, FileNotFoundError) else f"cannot be reached ({_oserror(exc)})"
            return Entry(path, rel, SKIP, f"broken link: it points to {target}, which {why}", day)
        return Entry(path, rel, REJECT, f"unreadable: {_oserror(exc)}", day, _late(day, start))
    if not is_data_name(child.name, segment_folder=segment):
        return Entry(path, rel, SKIP, _unsupported(child.name, segment), day)
    if day is None:
        return Entry(path, rel, SKIP, "not in a day folder (YYYY-MM-DD/ or Segment's <day-as-unix-ms>/): the run "
                     "cannot tell which day it belongs to")
    if not stat.S_ISREG(st.st_mode):
        kind = _KINDS.get(stat.S_IFMT(st.st_mode), "not a regular file")
        return Entry(path, rel, REJECT, f"unreadable: {kind}, not a regular file; not opened", day,
                     _late(day, start))
    return Entry(path, rel, LOAD, None, day, _late(day, start))


def _late(day: date | None, start: datetime) -> bool:
    return day is not None and datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(days=1) <= start


def _is_dir(entry: os.DirEntry) -> bool:
    try:
        return entry.is_dir()  # follows a link to a folder
    except OSError:
        return False


def _oserror(exc: OSError) -> str:
    return exc.strerror or str(exc)


def as_utc(value: datetime) -> datetime:
    """A stdlib UTC datetime (naive = UTC). Not ``astimezone``: pendulum 3 returns a naive value from it."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return datetime.fromtimestamp(value.timestamp(), tz=UTC)
