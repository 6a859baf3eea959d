"""A loader killed (SIGKILL) while its COPY is running leaves nothing behind; the rerun loads the file whole."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
from datetime import UTC, datetime

import psycopg
import pytest
from handoff.load import analytics

from tests.plugins.load.events import write_file
from tests.waiting import wait_until

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
LINES = 200_000

CHILD = """
import os, sys
from datetime import datetime, UTC
sys.path.insert(0, os.path.join(os.environ["REPO"], "plugins"))
from handoff.load.analytics import load_analytics_files
load_analytics_files(os.environ["LOADER_DSN"], os.environ["LANDING"], datetime(2026, 3, 2, tzinfo=UTC),
                     datetime(2026, 3, 3, tzinfo=UTC))
"""



def test_sigkill_during_copy_leaves_nothing_and_rerun_loads_whole_file(wh, tmp_path):
    _kill_during_copy_then_rerun(wh, tmp_path, after_rows=1000)


@pytest.mark.soak
@pytest.mark.parametrize("trial", range(5))
def test_sigkill_at_a_random_point_of_the_copy_then_rerun_loads_whole_file(wh, tmp_path, trial):
    seed = int(os.environ.get("HANDOFF_KILL_SEED", random.randrange(10**6))) + trial
    after_rows = random.Random(seed).randrange(1000, LINES - 20_000)
    print(f"killing after {after_rows} rows (HANDOFF_KILL_SEED={seed - trial})")
    _kill_during_copy_then_rerun(wh, tmp_path, after_rows=after_rows)


def _kill_during_copy_then_rerun(wh, tmp_path, *, after_rows: int) -> None:
    landing = tmp_path / "landing"
    path = write_file(landing / "2026-03-02" / "events-0000.jsonl", n=LINES)
    admin = psycopg.connect(wh.conninfo("admin"), autocommit=True)
    env = dict(os.environ, REPO=REPO, LOADER_DSN=wh.conninfo("loader"), LANDING=str(landing))
    child = subprocess.Popen([sys.executable, "-c", CHILD], env=env)
    try:
        def copy_running():
            row = admin.execute(
                "select p.pid, p.tuples_processed from pg_stat_progress_copy p "
                "where p.datname = current_database() and p.relid = 'raw.analytics_events'::regclass").fetchone()
            if child.poll() is not None:
                raise AssertionError(f"the loader exited ({child.returncode}) before we saw its COPY run")
            return row if row and row[1] > after_rows else None

        backend_pid, processed = wait_until(copy_running, "the loader's COPY to be running")
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
        assert child.returncode == -signal.SIGKILL
        assert after_rows < processed < LINES
        # the server notices the dead client and rolls the transaction back; wait for its backend to end
        wait_until(lambda: admin.execute("select count(*) = 0 from pg_stat_activity where pid = %s",
                                    [backend_pid]).fetchone()[0], "the killed loader's backend to end")
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()

    counts = admin.execute(
        "select (select count(*) from raw.analytics_events), (select count(*) from raw.quarantine), "
        "(select count(*) from ops.file_ledger), (select count(*) from ops.load_log)").fetchone()
    assert counts == (0, 0, 0, 0)

    res = analytics.load_analytics_files(wh.conninfo("loader"), landing, datetime(2026, 3, 2, tzinfo=UTC),
                                         datetime(2026, 3, 3, tzinfo=UTC))
    assert (res["files_loaded"], res["rows_loaded"], res["rows_quarantined"]) == (1, LINES, 0)
    assert admin.execute("select count(*), count(distinct message_id), min(_line), max(_line) "
                         "from raw.analytics_events").fetchone() == (LINES, LINES, 1, LINES)
    assert admin.execute("select path, status, rows_read from ops.file_ledger join ops.load_log using (batch_id)"
                         ).fetchall() == [(str(path), "loaded", LINES)]
    admin.close()
