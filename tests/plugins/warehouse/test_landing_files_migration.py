"""schema.sql (applied on every `warehouse up`) moves ops.landing_files from the layout keyed by the absolute path
to the one keyed by the path under the landing folder: the rows a second mount point added are merged, the ledger
learns each loaded file's relative path, and a second apply changes nothing."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC, datetime, timedelta

import psycopg
from handoff import warehouse
from handoff.load import analytics, batches

from tests.plugins.load.events import write_file

DAY = datetime(2026, 3, 2, tzinfo=UTC)

OLD_LANDING_FILES = """
create table ops.landing_files (
    path             text        primary key,
    relative_path    text        not null,
    source_kind      text        not null,
    file_date        date,
    outcome          text        not null,
    reason           text,
    sha256           text,
    size_bytes       bigint,
    batch_id         uuid,
    rows_read        bigint      not null default 0,
    rows_loaded      bigint      not null default 0,
    rows_quarantined bigint      not null default 0,
    first_seen_at    timestamptz not null,
    outcome_at       timestamptz not null,
    last_seen_at     timestamptz not null,
    constraint landing_files_outcome check (outcome in ('loaded', 'loaded_with_quarantine', 'rejected', 'skipped')),
    constraint landing_files_counts_reconcile
        check (outcome not in ('loaded', 'loaded_with_quarantine') or rows_read = rows_loaded + rows_quarantined)
);
create index landing_files_open_idx on ops.landing_files (last_seen_at) where outcome in ('rejected', 'skipped');
"""


def _landing_row(conn, *row) -> None:
    """(path, relative_path, outcome, reason, sha256, batch_id, rows, first_seen_at, outcome_at, last_seen_at)"""
    path, rel, outcome, reason, sha, batch_id, n, first, at, last = row
    conn.execute(
        "insert into ops.landing_files (path, relative_path, source_kind, file_date, outcome, reason, sha256, "
        "size_bytes, batch_id, rows_read, rows_loaded, rows_quarantined, first_seen_at, outcome_at, last_seen_at) "
        "values (%s, %s, 'analytics_file', '2026-03-02', %s, %s, %s, 1, %s, %s, %s, 0, %s, %s, %s)",
        [path, rel, outcome, reason, sha, batch_id, n, n, first, at, last])


def _ledgered(conn, path, sha, n, at) -> uuid.UUID:
    batch_id = uuid.uuid4()
    conn.execute("insert into ops.load_log (batch_id, source, source_kind, started_at, finished_at, rows_read, "
                 "rows_loaded, status, sha256) values (%s, %s, 'analytics_file', %s, %s, %s, %s, 'loaded', %s)",
                 [batch_id, str(path), at, at, n, n, sha])
    conn.execute("insert into ops.file_ledger (sha256, path, size_bytes, file_date, batch_id, loaded_at) "
                 "values (%s, %s, 1, '2026-03-02', %s, %s)", [sha, str(path), batch_id, at])
    return batch_id


def test_landing_files_moves_to_the_relative_path_key_once(wh, tmp_path):
    land = tmp_path / "worker-a" / "landing"
    other = tmp_path / "worker-b" / "landing"
    other.parent.mkdir(parents=True)
    x = write_file(land / "2026-03-02" / "x.jsonl", n=2)
    y = write_file(land / "2026-03-02" / "y.jsonl", n=3, start=10)  # ledgered before landing_files existed
    (land / "2026-03-02" / "notes.csv").write_text("n\n")
    other.symlink_to(land, target_is_directory=True)
    sx, sy = batches.sha256_file(x), batches.sha256_file(y)
    t0 = datetime(2026, 3, 3, 1, tzinfo=UTC)
    t1, t2 = t0 + timedelta(hours=1), t0 + timedelta(days=1)
    admin = wh.conninfo("admin")
    with psycopg.connect(admin, autocommit=True) as conn:  # the state the earlier layout left
        conn.execute("drop table ops.landing_files")
        conn.execute(OLD_LANDING_FILES)
        conn.execute("drop index ops.file_ledger_relative_path_idx")
        conn.execute("alter table ops.file_ledger drop column relative_path")
        bx = _ledgered(conn, x, sx, 2, t0)
        _ledgered(conn, y, sy, 3, t0)
        _landing_row(conn, str(x), "2026-03-02/x.jsonl", "loaded", None, sx, bx, 2, t0, t0, t0)
        # worker b's mount: the loaded file became a 'duplicate' row of its own, the csv a second skipped row
        _landing_row(conn, str(other / "2026-03-02" / "x.jsonl"), "2026-03-02/x.jsonl", "skipped",
                     f"same bytes as {x}, already loaded (ops.file_ledger)", sx, None, 0, t1, t1, t2)
        _landing_row(conn, str(land / "2026-03-02" / "notes.csv"), "2026-03-02/notes.csv", "skipped",
                     "unsupported type: .csv", None, None, 0, t0, t0, t0)
        _landing_row(conn, str(other / "2026-03-02" / "notes.csv"), "2026-03-02/notes.csv", "skipped",
                     "unsupported type: .csv", None, None, 0, t1, t1, t2)

    for _ in range(2):  # `warehouse up` applies the schema every time: the second apply is a no-op
        warehouse.setup(dataclasses.replace(wh, local=False), log=lambda *_: None)
        with psycopg.connect(admin) as conn:
            assert conn.execute("select pg_get_constraintdef(oid) from pg_constraint where conrelid = "
                                "'ops.landing_files'::regclass and contype = 'p'").fetchall() == [
                ("PRIMARY KEY (relative_path)",)]
            assert conn.execute("select relative_path, path, outcome, first_seen_at, outcome_at, last_seen_at "
                                "from ops.landing_files order by 1").fetchall() == [
                ("2026-03-02/notes.csv", str(other / "2026-03-02" / "notes.csv"), "skipped", t0, t1, t2),
                ("2026-03-02/x.jsonl", str(x), "loaded", t0, t0, t2)]
            assert conn.execute("select path, relative_path from ops.file_ledger order by 1").fetchall() == [
                (str(x), "2026-03-02/x.jsonl"), (str(y), None)]

    # worker b's run now: both files already loaded (y by its ledgered path's tail), one row per file
    res = analytics.load_analytics_files(wh.conninfo("loader"), other, DAY, DAY + timedelta(days=1))
    assert (res["files_loaded"], res["files_skipped"], res["files_ignored"]) == (0, 2, 1)
    with psycopg.connect(admin) as conn:
        assert conn.execute("select relative_path, outcome, path from ops.landing_files order by 1").fetchall() == [
            ("2026-03-02/notes.csv", "skipped", str(other / "2026-03-02" / "notes.csv")),
            ("2026-03-02/x.jsonl", "loaded", str(x)),
            ("2026-03-02/y.jsonl", "loaded", str(y))]
