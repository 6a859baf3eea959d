"""Every DAG imports cleanly, is configured as a production DAG should be, and parses fast."""

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

PARSE_SCRIPT = r"""
import json, os, sys, time
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
from airflow.dag_processing.dagbag import DagBag
t0 = time.perf_counter()
bag = DagBag(dag_folder=sys.argv[1])
# DagBag's own stats time the file's import (module body + DAG construction) per file
stats = [{"file": s.file, "duration": s.duration.total_seconds(), "dags": s.dag_num} for s in bag.dagbag_stats]
dags = {}
for dag_id, dag in bag.dags.items():
    dags[dag_id] = {
        "tags": sorted(dag.tags), "timetable": type(dag.timetable).__name__,
        "tasks": {t.task_id: {"retries": t.retries, "owner": t.owner,
                              "timeout": t.execution_timeout.total_seconds() if t.execution_timeout else None,
                              "upstream": sorted(t.upstream_task_ids),
                              "trigger_rule": getattr(t.trigger_rule, "value", str(t.trigger_rule)),
                              "dbt_global_flags": getattr(t, "dbt_cmd_global_flags", None),
                              "on_execute": [getattr(cb, "__name__", str(cb))
                                             for cb in (t.on_execute_callback or [])]}
                  for t in dag.tasks},
    }
print(json.dumps({"errors": {k: str(v) for k, v in bag.import_errors.items()}, "stats": stats, "dags": dags,
                  "wall": time.perf_counter() - t0}))
"""


@pytest.fixture(scope="module")
def parsed(tmp_path_factory) -> dict:
    home = tmp_path_factory.mktemp("airflow_home")
    env = {**os.environ, "AIRFLOW_HOME": str(home), "PYTHONPATH": str(REPO / "plugins"),
           "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS), "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins")}
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


def test_daily_dag_covers_one_whole_day():
    sys.path.insert(0, str(REPO / "plugins"))
    from airflow.timetables.interval import CronDataIntervalTimetable
    from handoff.airflow_run import interval_for
    from pendulum import DateTime

    timetable = CronDataIntervalTimetable("0 0 * * *", timezone="UTC")
    start, end = interval_for(datetime(2026, 11, 24, tzinfo=UTC).date())
    inferred = timetable.infer_manual_data_interval(run_after=DateTime.instance(end))
    assert (inferred.start, inferred.end) == (start, end)
    assert end - start == timedelta(days=1)


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
    # seeds and staging views build first, in one task, right after the freshness check; every model task of the
    # group hangs below it
    assert tasks["dbt_staging"]["upstream"] == ["dbt_source_freshness"]
    roots = [t for t in dbt_tasks if not any(u.startswith("dbt_build.") for u in tasks[t]["upstream"])]
    assert roots and all(tasks[t]["upstream"] == ["dbt_staging"] for t in roots)
    assert not any(".stg_" in t or t.endswith("_seed_build") for t in dbt_tasks)
    assert parsed["dags"]["handoff_daily"]["timetable"] == "CronDataIntervalTimetable"


def test_every_dbt_task_skips_json_artifacts_and_freezes_the_heap_before_it_runs(parsed):
    dbt_tasks = {tid: t for tid, t in parsed["dags"]["handoff_daily"]["tasks"].items()
                 if t["dbt_global_flags"] is not None}
    assert "dbt_staging" in dbt_tasks and len(dbt_tasks) > 20  # the staging build and one task per model
    for task_id, task in dbt_tasks.items():
        assert "--no-write-json" in task["dbt_global_flags"], task_id
        assert task["on_execute"] == ["freeze_heap"], task_id


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
