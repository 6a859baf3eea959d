"""`handoff run` refuses what would do nothing or collide, with a sentence and a non-zero exit: a day before the
DAG's start_date (Airflow would create no task and call the run a success), any run that ran no task, and a second
run while another of the same HANDOFF_HOME holds the run lock (refused, or with --wait started once the first ends).

The CLI runs as a subprocess against a fresh HANDOFF_HOME (its own Airflow metadata database), the session's test
database as the warehouse and a placeholder CRM connection: none of these runs gets as far as a task."""

from __future__ import annotations

import fcntl
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
START = "handoff_daily's start_date 2026-01-01 00:00 UTC"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cli(wh_target, tmp_path_factory):
    home = tmp_path_factory.mktemp("handoff_home")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW_CONN_", "AIRFLOW__", "HANDOFF_"))}
    env.update({"HANDOFF_HOME": str(home), "HANDOFF_WAREHOUSE_URL": wh_target.url("admin"),
                "PYTHONPATH": str(REPO / "plugins"),
                "AIRFLOW_CONN_HANDOFF_CRM": json.dumps({"conn_type": "http", "host": "http://127.0.0.1:9"})})

    def run(*args: str, popen: bool = False, code: str | None = None):
        argv = [sys.executable, "-c", code] if code else [sys.executable, "-m", "handoff.cli", *args]
        if popen:
            return subprocess.Popen(argv, env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        return subprocess.run(argv, env=env, cwd=REPO, capture_output=True, text=True, timeout=600)

    return home, run


def _dag_runs(home: Path) -> int:
    db = home / "airflow" / "airflow.db"
    if not db.exists():
        return 0
    with sqlite3.connect(db) as conn:
        return conn.execute("select count(*) from dag_run").fetchone()[0]


def test_a_day_before_the_start_date_is_refused_with_the_reason(cli):
    home, run = cli
    res = run("run", "--date", "2018-11-15")
    assert res.returncode == 1, res.stderr[-3000:]
    assert f"2018-11-15 is before {START}" in res.stderr
    assert "the earliest day it runs is 2025-12-31" in res.stderr
    assert "succeeded" not in res.stderr
    assert _dag_runs(home) == 0  # refused before Airflow made a run of it


def test_a_run_in_which_airflow_ran_no_task_is_an_error(cli):
    """Without the start_date check, Airflow makes a run of 2018-11-15 with no task instance and calls it a
    success ("succeeded: 0/0 tasks" before): the run still fails, saying no task ran."""
    home, run = cli
    res = run(code="import sys; from handoff import airflow_run, cli; "
                   "airflow_run.refuse_before_start_date = lambda *a: None; "
                   "sys.exit(cli.main(['run', '--date', '2018-11-15']))")
    assert res.returncode == 1, res.stderr[-3000:]
    assert "handoff_daily run for 2018-11-15 ran no task (task states: none)" in res.stderr
    assert "succeeded" not in res.stderr
    assert _dag_runs(home) == 1  # Airflow did make the (empty) run


def _hold_lock(home: Path, day: str) -> int:
    path = home / "airflow" / "handoff_run.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    os.ftruncate(fd, 0)
    os.write(fd, json.dumps({"pid": os.getpid(), "date": day}).encode())
    return fd


def test_a_second_run_while_one_holds_the_lock_is_refused(cli):
    home, run = cli
    runs_before = _dag_runs(home)
    fd = _hold_lock(home, "2026-11-30")
    try:
        res = run("run", "--date", "2026-11-30")
    finally:
        os.close(fd)
    assert res.returncode == 1
    assert f"another handoff run for 2026-11-30 (pid {os.getpid()}) is running" in res.stderr
    assert "wait for it to finish and run 2026-11-30 again, or pass --wait" in res.stderr
    assert "Traceback" not in res.stderr and "IntegrityError" not in res.stderr
    # it did nothing: no Airflow run, and the holder's note in the lock file is untouched
    assert _dag_runs(home) == runs_before
    assert json.loads((home / "airflow" / "handoff_run.lock").read_text()) == {"pid": os.getpid(),
                                                                             "date": "2026-11-30"}


def test_with_wait_a_second_run_starts_once_the_first_releases_the_lock(cli):
    home, run = cli
    fd = _hold_lock(home, "2026-11-30")
    try:
        proc = run("run", "--date", "2018-11-15", "--wait", popen=True)
        line = proc.stderr.readline()  # blocks until the run says it waits (or exits)
        assert f"waiting for another handoff run for 2026-11-30 (pid {os.getpid()}) to finish" in line, line
        assert proc.poll() is None  # still waiting: we hold the lock
    finally:
        os.close(fd)
    _, err = proc.communicate(timeout=600)
    # it went on once the lock was free: took it, and reached the start_date check
    assert proc.returncode == 1
    assert f"2018-11-15 is before {START}" in err
    assert json.loads((home / "airflow" / "handoff_run.lock").read_text()) == {"pid": proc.pid, "date": "2018-11-15"}
