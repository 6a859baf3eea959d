"""PostgreSQL restarted (fast stop, or every server process SIGKILLed) while the loader's COPY runs: the
interrupted call raises, nothing of the file is committed, and the retried call (Airflow's retry) loads the file
whole, once."""

from __future__ import annotations

import contextlib
import os
import signal
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest
from handoff import warehouse
from handoff.load import analytics
from handoff.warehouse import local

from tests.plugins.load.events import write_file
from tests.ports import free_port
from tests.waiting import wait_until

LINES = 100_000
DAY = (datetime(2026, 3, 2, tzinfo=UTC), datetime(2026, 3, 3, tzinfo=UTC))
QUIET = {"log": lambda *_: None}



def _children(pid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


@pytest.fixture
def cluster(tmp_path_factory):
    """A throw-away cluster on a free port, with the warehouse's schemas, tables and roles."""
    c = local.LocalCluster(root=tmp_path_factory.mktemp("wh") / "warehouse", port=free_port())
    c.up(**QUIET)
    tgt = warehouse.Target("127.0.0.1", c.port, "handoff", c.credentials(), local=True)
    warehouse.setup(tgt, **QUIET)
    yield c, tgt
    c.down(**QUIET)


def fast_stop(c: local.LocalCluster) -> None:
    assert c.down(**QUIET) is True


def crash_server(c: local.LocalCluster) -> None:
    """A hard crash: every server process SIGKILLed at once (the postmaster alone would let a running COPY finish)."""
    pid = c.postmaster_pid()
    children = _children(pid)
    assert children, "the postmaster has no children?"
    for proc in children:
        with contextlib.suppress(ProcessLookupError):  # a child may exit on its own meanwhile
            os.kill(proc, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):
        local.kill_postmaster(c)
    wait_until(lambda: not any(local._pid_alive(p) for p in [pid, *children]), "the killed cluster's processes to end")
    assert not c.is_running()


@pytest.mark.parametrize("stop", [fast_stop, crash_server], ids=["fast-stop", "server-crash"])
def test_postgres_restarted_mid_run_the_retried_task_succeeds(cluster, tmp_path, stop):
    c, tgt = cluster
    landing = tmp_path / "landing"
    path = write_file(landing / "2026-03-02" / "events-0000.jsonl", n=LINES)
    assert sum(1 for _ in path.open("rb")) == LINES

    with ThreadPoolExecutor(1) as pool, psycopg.connect(tgt.conninfo("admin"), autocommit=True) as watcher:
        run = pool.submit(analytics.load_analytics_files, tgt.conninfo("loader"), landing, *DAY)

        def copy_running():
            if run.done():
                raise AssertionError(f"the load ended before we saw its COPY run: {run.exception() or run.result()}")
            row = watcher.execute(
                "select tuples_processed from pg_stat_progress_copy where datname = current_database() "
                "and relid = 'raw.analytics_events'::regclass").fetchone()
            return row[0] if row and row[0] > 1000 else None

        processed = wait_until(copy_running, "the loader's COPY to be running")
        stop(c)
        assert c.up(**QUIET) is True  # the restart
        with pytest.raises(analytics.LoadError, match=r"events-0000\.jsonl failed, nothing of it was committed"):
            run.result(timeout=60)
    assert 1000 < processed < LINES

    with psycopg.connect(tgt.conninfo("admin"), autocommit=True) as admin:
        counts = admin.execute(
            "select (select count(*) from raw.analytics_events), (select count(*) from raw.quarantine), "
            "(select count(*) from ops.file_ledger), (select count(*) from ops.load_log where status = 'loaded')"
        ).fetchone()
        assert counts == (0, 0, 0, 0)

        # Airflow's retry: the same call again, on the restarted server
        res = analytics.load_analytics_files(tgt.conninfo("loader"), landing, *DAY)
        assert (res["files_loaded"], res["rows_loaded"], res["rows_quarantined"]) == (1, LINES, 0)
        assert admin.execute("select count(*), count(distinct message_id), min(_line), max(_line) "
                             "from raw.analytics_events").fetchone() == (LINES, LINES, 1, LINES)
        assert admin.execute("select path, status, rows_read from ops.file_ledger join ops.load_log using (batch_id)"
                             ).fetchall() == [(str(path), "loaded", LINES)]
        assert admin.execute("select count(*) from ops.file_ledger").fetchone() == (1,)
        assert admin.execute("select count(*) from ops.load_log where status = 'loaded'").fetchone() == (1,)
        # and a third run (a second retry, or tomorrow's late-file scan) loads nothing again
        again = analytics.load_analytics_files(tgt.conninfo("loader"), landing, *DAY)
        assert (again["files_loaded"], again["files_skipped"]) == (0, 1)
        assert admin.execute("select count(*) from raw.analytics_events").fetchone() == (LINES,)
