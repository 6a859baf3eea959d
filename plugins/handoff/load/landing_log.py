"""``ops.landing_files``: what the analytics loader does with every file under the landing folder, planned before
it loads (load, already loaded, skip with the reason, reject with a sentence, later) and recorded after, one row per
file keyed by its path under the landing folder. ``dry_run`` is the same plan without writing anything.
"""

from __future__ import annotations

import logging
import os
import stat
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

import psycopg

from handoff.load import batches, landing
from handoff.load.batches import LoadError
from handoff.load.landing import SOURCE_KIND

log = logging.getLogger(__name__)

_as_utc = landing.as_utc


LOADED_OUTCOMES = ("loaded", "loaded_with_quarantine")


# one row per file, keyed by its path under the landing folder (wherever a worker mounts it): a new outcome (or
# new bytes) replaces the old one and its time; a file still skipped or rejected only has last_seen_at (and path)
# moved on; a file found loaded again writes nothing (the caller does not send it)
UPSERT_LANDING = """
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


def line_of(item: dict) -> str:
    since = f" (since {item['since'][:10]})" if item.get("since") else ""
    return f"  {item['outcome']}: {item['path']}: {item['reason']}{since}"


def outcome_of(p: Planned) -> str:
    return "rejected" if p.action in ("reject", "previously_rejected") else "skipped"


def listed(p: Planned) -> dict:
    """The file's entry in the summary's ``not_loaded``; ``since`` when the outcome is the one already recorded."""
    outcome = outcome_of(p)
    unchanged = p.known is not None and (p.action == "previously_rejected" or
                                         (p.known[0], p.known[1]) == (outcome, p.reason))
    return {"path": p.entry.relative, "outcome": outcome, "reason": p.reason,
            "since": p.known[3].isoformat() if unchanged and p.known[3] else None}


def record_not_loaded(cur: psycopg.Cursor, planned: list[Planned], run_at: datetime) -> None:
    """Record files skipped or rejected, all in the caller's transaction: one upsert statement for all of them (a
    row is rewritten only if the outcome changed, else its last_seen_at moves on) and one update of last_seen_at
    for the files rejected before and not retried."""
    again = [p.entry.relative for p in planned if p.action == "previously_rejected"]
    rows = [[str(p.entry.path), p.entry.relative, p.entry.file_date, outcome_of(p), p.reason, p.sha256,
             file_size(p.entry.path), None, 0, 0, 0, run_at, run_at, run_at]
            for p in planned if p.action != "previously_rejected"]
    if again:
        cur.execute("update ops.landing_files set last_seen_at = %s where relative_path = any(%s)", [run_at, again])
    if rows:
        cur.executemany(UPSERT_LANDING, rows)


def file_size(path: Path) -> int | None:
    """The file's size; None for what is not a regular file (a folder, a FIFO, a broken link)."""
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_size if stat.S_ISREG(st.st_mode) else None


def record_known_loaded(cur: psycopg.Cursor, planned: list[Planned], run_at: datetime) -> None:
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
    cur.execute(UPSERT_LANDING, [str(path), relative, file_date, outcome, reason, sha256, file_size(path), batch_id,
                                  rows_read, rows_loaded, rows_quarantined, at, at, at])


def problems_since(conninfo: str, since: datetime) -> list[tuple[str, str, str, datetime]]:
    """(relative path, outcome, reason, outcome_at) of every file a run since ``since`` skipped or rejected."""
    with psycopg.connect(conninfo) as conn:
        return conn.execute(
            "select relative_path, outcome, reason, outcome_at from ops.landing_files "
            "where outcome in ('skipped', 'rejected') and last_seen_at >= %s order by outcome, relative_path",
            [since]).fetchall()


def record_stop(conn: psycopg.Connection, failed: Planned, not_reached: list[Planned], exc: Exception, *,
                 interval_start: datetime, interval_end: datetime, run_at: datetime) -> None:
    """A load that stops the run: the failing file's ops.load_log row (status failed), then in one transaction its
    ops.landing_files row (rejected, the error as the reason) and a row for each file the run had still to load
    (skipped: not reached), so every file seen has its row. Best effort: the caller raises the error anyway."""
    e = failed.entry
    batches.record_failure(conn, source=str(e.path), source_kind=SOURCE_KIND, interval_start=interval_start,
                           interval_end=interval_end, error=f"{type(exc).__name__}: {exc}", sha256=failed.sha256)
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
            record_not_loaded(cur, rows, run_at)
    except psycopg.Error:
        log.exception("could not record in ops.landing_files that loading %s failed", e.relative)
