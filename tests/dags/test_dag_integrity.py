"""Every DAG imports cleanly, is configured as a production DAG should be, and parses without loading the work."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DAGS = REPO / "dags"
NOT_UTC = "America/New_York"
# What a DAG file must not load when the scheduler parses it: the task bodies (handoff.pipeline and the modules
# it calls into), database drivers, HTTP and CRM clients, dbt itself. They load when a task runs.
HEAVY_AT_PARSE = ("handoff.pipeline", "handoff.load", "handoff.extract", "handoff.push", "handoff.crm",
                  "handoff.warehouse", "handoff.sample", "handoff.sources", "dbt", "psycopg", "psycopg2",
                  "httpx", "dlt", "hubspot", "handoff.dashboard", "plotly", "streamlit")

PARSE_SCRIPT = r"""
import json, os, sys, time
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
from airflow.dag_processing.dagbag import DagBag
import pendulum
loaded_before = set(sys.modules)
t0 = time.perf_counter()
bag = DagBag(dag_folder=sys.argv[1])
# what importing the DAG files loaded (Airflow's own imports, done above, excluded)
loaded = sorted(set(sys.modules) - loaded_before)
# the data interval each DAG's own timetable gives a manual run made right after 2026-11-24 (UTC) ends
run_after = pendulum.datetime(2026, 11, 25, tz="UTC")
# DagBag's own stats time the file's import (module body + DAG construction) per file
stats = [{"file": s.file, "duration": s.duration.total_seconds(), "dags": s.dag_num} for s in bag.dagbag_stats]
dags = {}
for dag_id, dag in bag.dags.items():
    dags[dag_id] = {
        "tags": sorted(dag.tags), "timetable": type(dag.timetable).__name__,
        "start_date": dag.start_date.isoformat() if dag.start_date else None,
        "manual_interval": [d.isoformat() for d in dag.timetable.infer_manual_data_interval(run_after=run_after)],
        "tasks": {t.task_id: {"retries": t.retries, "owner": t.owner,
                              "timeout": t.execution_timeout.total_seconds() if t.execution_timeout else None,
                              "upstream": sorted(t.upstream_task_ids),
                              "trigger_rule": getattr(t.trigger_rule, "value", str(t.trigger_rule)),
                              "dbt_global_flags": getattr(t, "dbt_cmd_global_flags", None),
                              "dbt_flags": getattr(t, "dbt_cmd_flags", None),
                              "on_execute": [getattr(cb, "__name__", str(cb))
                                             for cb in (t.on_execute_callback or [])]}
                  for t in dag.tasks},
    }
print(json.dumps({"errors": {k: str(v) for k, v in bag.import_errors.items()}, "stats": stats, "dags": dags,
                  "loaded": loaded, "wall": time.perf_counter() - t0}))
"""


@pytest.fixture(scope="module")
def parsed(tmp_path_factory) -> dict:
    home = tmp_path_factory.mktemp("airflow_home")
    env = {**os.environ, "AIRFLOW_HOME": str(home), "PYTHONPATH": str(REPO / "plugins"),
           "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS), "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
           # not UTC, so a DAG whose dates lean on the deployment's default time zone shows it
           "AIRFLOW__CORE__DEFAULT_TIMEZONE": NOT_UTC}
    out = subprocess.run([sys.executable, "-c", PARSE_SCRIPT, str(DAGS)], env=env, capture_output=True, text=True,
                         check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_every_dag_imports_without_errors(parsed):
    assert parsed["errors"] == {}
    assert "handoff_daily" in parsed["dags"]


def test_dags_have_tags_owner_and_retries(parsed):
    for dag_id, dag in parsed["dags"].items():
        assert dag["tags"], f"{dag_id} has no tags"
        for task_id, task in dag["tasks"].items():
            assert task["owner"] not in ("", "airflow"), f"{dag_id}.{task_id} has no owner"
            assert task["retries"] >= 1, f"{dag_id}.{task_id} has no retries"
            assert task["timeout"] is not None, f"{dag_id}.{task_id} has no execution_timeout"


def test_daily_dag_covers_one_whole_day(parsed):
    """The timetable DagBag reports for handoff_daily (not one built here) gives the run for day D [D, D+1) UTC,
    the interval ``handoff run --date D`` asks for."""
    sys.path.insert(0, str(REPO / "plugins"))
    from handoff.airflow_run import interval_for

    start, end = interval_for(datetime(2026, 11, 24, tzinfo=UTC).date())
    inferred_start, inferred_end = map(datetime.fromisoformat, parsed["dags"]["handoff_daily"]["manual_interval"])
    assert (inferred_start, inferred_end) == (start, end)
    assert end - start == timedelta(days=1)


def test_daily_dag_starts_at_midnight_utc_whatever_the_default_time_zone(parsed):
    """Parsed with default_timezone = America/New_York: the start_date is still 2026-01-01 00:00 UTC."""
    start = datetime.fromisoformat(parsed["dags"]["handoff_daily"]["start_date"])
    assert start == datetime(2026, 1, 1, tzinfo=UTC)


def test_dag_files_load_no_task_dependencies_at_parse_time(parsed):
    """The scheduler parses DAG files again and again: a DAG file imports what declares the DAG, and the work's
    modules (the task bodies, database drivers, HTTP clients, dbt) only when a task runs."""
    assert any(m.startswith("handoff") for m in parsed["loaded"])  # the check saw the DAG file's own imports
    heavy = [m for m in parsed["loaded"] if any(m == h or m.startswith(h + ".") for h in HEAVY_AT_PARSE)]
    assert heavy == []


def test_daily_dag_order_is_extract_load_then_dbt_then_push(parsed):
    tasks = parsed["dags"]["handoff_daily"]["tasks"]
    assert set(tasks["dbt_source_freshness"]["upstream"]) == {"extract_load_crm", "extract_load_analytics"}
    dbt_tasks = [t for t in tasks if t.startswith("dbt_build.")]
    assert dbt_tasks, "the dbt stage rendered no model tasks"
    # every dbt model task hangs (transitively) below the freshness check; the push waits for every leaf
    push_upstream = set(tasks["push_sqls"]["upstream"])
    assert push_upstream and push_upstream <= set(dbt_tasks)
    # ... and on every last dbt task (tests spanning several models included): a failed dbt test stops the push
    has_downstream = {u for t in dbt_tasks for u in tasks[t]["upstream"]}
    leaves = {t for t in dbt_tasks if t not in has_downstream}
    assert leaves == push_upstream
    assert tasks["push_sqls"]["trigger_rule"] == "all_success"
    # the day's report is written beside the push, from the same finished marts
    assert set(tasks["write_report"]["upstream"]) == push_upstream
    assert tasks["write_report"]["trigger_rule"] == "all_success"
    # seeds and staging views build first, in one task, right after the freshness check; every model task of the
    # group hangs below it
    assert tasks["dbt_staging"]["upstream"] == ["dbt_source_freshness"]
    roots = [t for t in dbt_tasks if not any(u.startswith("dbt_build.") for u in tasks[t]["upstream"])]
    assert roots and all(tasks[t]["upstream"] == ["dbt_staging"] for t in roots)
    assert not any(".stg_" in t or t.endswith("_seed_build") for t in dbt_tasks)
    assert parsed["dags"]["handoff_daily"]["timetable"] == "CronDataIntervalTimetable"


def _dbt_tasks(parsed: dict) -> dict:
    """The daily DAG's dbt tasks (the Cosmos operators, which carry dbt's global flags)."""
    return {tid: t for tid, t in parsed["dags"]["handoff_daily"]["tasks"].items() if t["dbt_global_flags"] is not None}


def test_every_dbt_task_skips_json_artifacts_and_freezes_the_heap_before_it_runs(parsed):
    dbt_tasks = _dbt_tasks(parsed)
    assert "dbt_staging" in dbt_tasks and len(dbt_tasks) > 20  # the staging build and one task per model
    for task_id, task in dbt_tasks.items():
        assert "--no-write-json" in task["dbt_global_flags"], task_id
        assert task["on_execute"] == ["freeze_heap"], task_id


def test_a_daily_runs_dbt_tasks_leave_the_unit_tests_to_make_test(parsed):
    """Unit tests check the models' logic on fixed YAML rows; a day's data cannot change them (tests/dbt runs them)."""
    dbt_tasks = _dbt_tasks(parsed)
    assert len(dbt_tasks) > 20
    for task_id, task in dbt_tasks.items():
        flags = task["dbt_flags"]
        assert flags[flags.index("--exclude-resource-type") + 1] == "unit_test", task_id


def test_freeze_heap_leaves_what_a_task_allocates_collectable():
    import gc  # noqa: PLC0415
    import weakref  # noqa: PLC0415

    from handoff.dbt_dag import freeze_heap  # noqa: PLC0415

    class Node:
        pass

    try:
        before = Node()
        before.self = before  # alive (referenced here) when the heap is frozen
        freeze_heap({})
        assert gc.get_freeze_count() > 0
        after = Node()
        after.self = after  # a reference cycle the "task" allocates, then drops
        gone = weakref.ref(after)
        del after
        gc.collect()
        assert gone() is None  # collected as before the freeze
        assert before.self is before
    finally:
        gc.unfreeze()
