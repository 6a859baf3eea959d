"""End to end, as a new user would: a fresh HANDOFF_HOME with its own PostgreSQL cluster, a small sample, and the
daily DAG run through Airflow (extract/load → dbt → push to the CRM sandbox). Then the same day again, its tasks
two at a time through Airflow's LocalExecutor: nothing new loaded, the marts unchanged to the byte, nothing new
sent to the CRM."""

from __future__ import annotations

import json
import re
import sqlite3
from pathlib import Path

import psycopg
import pytest

from tests.e2e.daily_run import (
    CANARY,
    END,
    REPO,
    admin_conninfo,
    assert_sample_loaded_and_built,
    mart_hashes,
    pushes,
)

pytestmark = pytest.mark.slow


def test_a_day_runs_end_to_end_and_rerunning_it_changes_nothing(home):
    home, env, run = home
    first = run("run", "--date", END.isoformat())
    assert "succeeded" in first.stderr
    _assert_progress_names_every_task(first.stdout, _latest_run_tasks(home, "state"))
    conninfo = admin_conninfo(home, env)
    assert_sample_loaded_and_built(home, conninfo)
    with psycopg.connect(conninfo) as conn:
        queue_after_push = conn.execute("select count(*) from marts.sql_handoff_queue").fetchone()[0]
    pushed, created_twice = pushes(conninfo)
    assert pushed > 0 and created_twice == 0
    # the day's report, written beside the push from the same marts
    report = home / "reports" / f"handoff-{END.isoformat()}.html"
    assert report.exists() and f"MQL→SQL conversion for {END.isoformat()}" in report.read_text(encoding="utf-8")
    assert _overlapping(_task_spans(home)) == []  # in-process: one task at a time
    _assert_a_rerun_changes_nothing(home, run, conninfo, pushed, queue_after_push)


@pytest.mark.soak  # the LocalExecutor's worker processes take minutes more than the in-process run (make test-soak)
def test_a_rerun_through_the_local_executor_two_tasks_at_a_time_changes_nothing(home):
    """Again, as a scheduler would run it: tasks in LocalExecutor workers, two at a time."""
    home, env, run = home
    conninfo = admin_conninfo(home, env)
    with psycopg.connect(conninfo) as conn:
        queue = conn.execute("select count(*) from marts.sql_handoff_queue").fetchone()[0]
    pushed, _ = pushes(conninfo)
    _assert_a_rerun_changes_nothing(home, run, conninfo, pushed, queue, "--parallel", "2")
    # the two extract/load tasks have no dependency between them: with two worker slots, they overlap
    assert ("extract_load_analytics", "extract_load_crm") in _overlapping(_task_spans(home))


def _assert_a_rerun_changes_nothing(home, run, conninfo: str, pushed: int, queue_before: int, *args: str) -> None:
    """The same day again: nothing more loaded or pushed; the queue shrinks to what the CRM has not acknowledged,
    and every other mart is identical to the byte."""
    hashes = mart_hashes(conninfo)
    raw_before = _raw_counts(conninfo)
    again = run("run", "--date", END.isoformat(), *args)
    assert "succeeded" in again.stderr
    assert _raw_counts(conninfo)["raw.analytics_events"] == raw_before["raw.analytics_events"]
    assert pushes(conninfo) == (pushed, 0)
    after = mart_hashes(conninfo)
    assert {k: v for k, v in after.items() if k != "sql_handoff_queue"} == \
        {k: v for k, v in hashes.items() if k != "sql_handoff_queue"}
    assert after["sql_handoff_queue"][0] <= queue_before
    _assert_no_secret_leaked(home)


def _assert_progress_names_every_task(printed: str, states: list[tuple[str, str]]) -> None:
    """handoff run printed one end line per task of the run, with its state and seconds, counting up to all of
    them (run_progress.py): '[ 7/43 tasks] dbt_staging: success in 8.8 s'."""
    ended = re.findall(r"^  \[\s*(\d+)/(\d+) tasks\] (\S+): (\w+) in [\d.]+ s", printed, re.MULTILINE)
    assert sorted((task, state) for _, _, task, state in ended) == sorted(states)
    assert [int(done) for done, _, _, _ in ended] == list(range(1, len(states) + 1))
    assert {int(total) for _, total, _, _ in ended} == {len(states)}


def _assert_no_secret_leaked(home: Path) -> None:
    """The CRM token and the warehouse passwords never reach task logs, XComs, rendered templates (both live in
    Airflow's metadata DB) or dbt's artifacts and logs."""
    creds = json.loads((home / "warehouse" / "credentials.json").read_text())
    secrets = [CANARY.encode()] + [c["password"].encode() for c in creds.values()]
    places = [*(home / "airflow").rglob("*"), *(REPO / "dbt_project" / "target").rglob("*"),
              *(REPO / "dbt_project" / "logs").rglob("*")]
    scanned = 0
    for path in places:
        if not path.is_file():
            continue
        data = path.read_bytes()
        scanned += 1
        for secret in secrets:
            assert secret not in data, f"a secret leaked into {path}"
    logs = list((home / "airflow" / "logs").rglob("*.log"))
    assert logs and (home / "airflow" / "airflow.db").exists() and scanned > len(logs)
    assert any(b"sql_handoff_queue" in p.read_bytes() for p in logs)  # the logs we scanned are the run's


def _latest_run_tasks(home: Path, columns: str) -> list[tuple]:
    """(task_id, *columns) of each task instance of the latest handoff_daily run (Airflow's metadata DB; a rerun of
    a day replaces the day's run)."""
    with sqlite3.connect(home / "airflow" / "airflow.db") as db:
        return db.execute(
            f"select task_id, {columns} from task_instance where dag_id = 'handoff_daily' and run_id ="
            " (select run_id from dag_run where dag_id = 'handoff_daily' order by id desc limit 1)").fetchall()


def _task_spans(home: Path) -> dict[str, tuple[str, str]]:
    """The latest run's {task_id: (start, end)} of the tasks that started."""
    return {t: (s, e) for t, s, e in _latest_run_tasks(home, "start_date, end_date") if s is not None}


def _overlapping(spans: dict[str, tuple[str, str]]) -> list[tuple[str, str]]:
    """The pairs of tasks that ran at the same time (sorted names)."""
    names = sorted(spans)
    return [(a, b) for i, a in enumerate(names) for b in names[i + 1:]
            if spans[a][0] < spans[b][1] and spans[b][0] < spans[a][1]]


def _raw_counts(conninfo: str) -> dict[str, int]:
    with psycopg.connect(conninfo) as conn:
        tables = [r[0] for r in conn.execute(
            "select format('%I.%I', schemaname, tablename) from pg_tables where schemaname = 'raw'")]
        return {t: conn.execute(f"select count(*) from {t}").fetchone()[0] for t in tables}


def test_a_failing_dbt_test_stops_everything_downstream_the_push_included(home):
    """A row no dbt test accepts (here: an event type outside the Segment spec, written straight to raw as a
    second writer or a loader bug would) fails the staging task's accepted_values test: no model after it runs,
    the push does not run, the run fails loudly, and the marts stay as the last good run left them."""
    home, env, run = home
    conninfo = admin_conninfo(home, env)
    with psycopg.connect(conninfo) as conn:
        pushes = conn.execute("select count(*) from ops.crm_push_log").fetchone()[0]
    hashes = mart_hashes(conninfo)
    with psycopg.connect(conninfo) as conn:
        # a second writer's own batch (staging reads raw by batch: a batch is written once, in one transaction)
        conn.execute("insert into raw.analytics_events select gen_random_uuid(), now(), _source, _line,"
                     " 'not-in-the-spec-1', 'bogus', event_name, anonymous_id, user_id, event_at, received_at, record"
                     " from raw.analytics_events limit 1")
    try:
        failed = run("run", "--date", END.isoformat(), check=False)
    finally:
        with psycopg.connect(conninfo) as conn:
            conn.execute("delete from raw.analytics_events where message_id = 'not-in-the-spec-1'")
    assert failed.returncode != 0
    states = {task: state for task, state in _latest_run_tasks(home, "state")}
    # the failed task is named as it fails, with its error's first lines and where its whole log is
    failed_line = re.search(r"^  \[\s*\d+/\d+ tasks\] dbt_staging: failed in [\d.]+ s\n((?:    .*\n)+)",
                            failed.stdout, re.MULTILINE)
    assert failed_line and "accepted_values" in failed_line.group(1), failed.stdout[-3000:]
    assert re.search(r"full log: \S+handoff_run_\S+\.log", failed_line.group(1))
    # the failing test is a staging one: the staging task fails, and no model task after it runs
    assert states["dbt_staging"] == "failed"
    models = [t for t in states if t.startswith("dbt_build.")]
    assert len(models) > 20 and {states[t] for t in models} == {"upstream_failed"}
    assert states["push_sqls"] == "upstream_failed"
    assert states["write_report"] == "upstream_failed"
    with psycopg.connect(conninfo) as conn:
        assert conn.execute("select count(*) from ops.crm_push_log").fetchone()[0] == pushes
    assert mart_hashes(conninfo) == hashes
