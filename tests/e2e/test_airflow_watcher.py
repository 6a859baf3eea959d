"""Cosmos's watcher execution mode through the real scheduler (``HANDOFF_DBT_EXECUTION_MODE=watcher handoff airflow
up``): the dbt stage is one producer task running ONE ``dbt build`` of the per-model group, and a deferrable sensor per
model and per model's tests that reports what the producer's dbt said (the triggerer polls the producer's XComs). A
day triggered through the public REST API succeeds, every task once, builds marts equal, by content hash, to a
local-mode run of the same day on the same sample (``handoff run --parallel 2``, in a HANDOFF_HOME of its own), and
pushes the same SQLs, once each. The producer's build runs the tests that span the staging layer and a model of the
group (dbt_dag.py: what the watcher mode selects), and ``handoff airflow down`` leaves no process behind.

15 min 34 s on 2 cores while another benchmark kept the load average at 6-7 (``up`` 20 s, the watcher day about 8
min, the local-mode run of it the rest): ``make test-watcher`` runs it, ``make test`` does not.
"""

from __future__ import annotations

import pytest

from tests.e2e.daily_run import (
    CANARY,
    END,
    admin_conninfo,
    assert_sample_loaded_and_built,
    mart_hashes,
    prepared_home,
    pushes,
)
from tests.e2e.rest_runs import DAG, assert_no_secret_in, day_interval, first_up, session_pids, trigger_and_wait

pytestmark = pytest.mark.airflow_watcher

PRODUCER = "dbt_build.dbt_producer_watcher"
# tests with one parent in the staging layer (built by dbt_staging, outside the group) and one in the group: the
# producer's build must run them (before the fix its --exclude of the staging layer dropped them, and their sensors
# passed on "no information about the node")
SPANNING_TESTS = ("equal_rowcount_int_events_attributed_ref_stg_analytics__events_",
                  "relationships_int_identities_stitched_contact_id__contact_id__ref_stg_crm__contacts_",
                  "relationships_int_contact_fit_rule_hits_rule_id__rule_id__ref_funnel_rules_")


def _tries(api, run_id: str) -> dict[str, int]:
    status, body = api.call("GET", f"/api/v2/dags/{DAG}/dagRuns/{run_id}/taskInstances?limit=500")
    assert status == 200, body
    return {ti["task_id"]: ti["try_number"] for ti in body["task_instances"]}


def test_the_watcher_mode_builds_the_marts_the_local_mode_builds_and_pushes_each_sql_once(home, tmp_path_factory):
    from handoff.airflow_api import Api  # noqa: PLC0415

    home, env, run = home
    env["HANDOFF_DBT_EXECUTION_MODE"] = "watcher"  # reaches every service, and the tasks, through their environment
    sessions: set[int] = set()
    try:
        url, password, sessions = first_up(home, env, run)
        api = Api.login(url, "admin", password)
        assert api.call("PATCH", f"/api/v2/dags/{DAG}", {"is_paused": False})[0] == 200
        start, _ = day_interval(END)
        states = trigger_and_wait(api, "watcher_day", start, END)
        assert set(states.values()) == {"success"}
        dbt_tasks = [t for t in states if t.startswith("dbt_build.")]
        # the watcher graph: one producer, sensors for the models and their tests, no per-model dbt build task
        assert PRODUCER in states and f"{PRODUCER}_done" in states
        assert any(t.endswith(".run") for t in dbt_tasks) and any(t.endswith(".test") for t in dbt_tasks)
        assert not any(t.endswith("_model_build") for t in dbt_tasks)
        # the producer's one dbt build ran every node of the group, tests spanning the staging layer included
        producer_log = (home / "airflow" / "logs" / f"dag_id={DAG}" / "run_id=watcher_day" / f"task_id={PRODUCER}"
                        / "attempt=1.log").read_text(errors="replace")
        assert producer_log.count("'build'") == 1 and "Completed successfully" in producer_log
        for test in SPANNING_TESTS:
            assert f"PASS {test}" in producer_log, test
        tries = _tries(api, "watcher_day")
        print("dbt tasks:", len(dbt_tasks), "tried more than once:", {t: n for t, n in tries.items() if n > 1})
        assert tries[PRODUCER] == 1  # a second try of the producer skips, and every sensor would run its own dbt

        conninfo = admin_conninfo(home, env)
        assert_sample_loaded_and_built(home, conninfo)
        pushed, created_twice = pushes(conninfo)
        assert pushed > 0 and created_twice == 0
        watcher_marts = mart_hashes(conninfo)
        print("marts after the watcher run:", watcher_marts)
        assert_no_secret_in(home, [password, CANARY])
    finally:
        down = run("airflow", "down", check=False)
        print(down.stdout, down.stderr)
    assert down.returncode == 0, down.stderr
    assert sessions and session_pids(sessions) == []

    # the local mode's run of the same day on the same sample, in a home of its own: the same marts, to the byte,
    # and the same SQLs pushed, once each
    local_home = tmp_path_factory.mktemp("local_mode_home")
    local_env, local_run = prepared_home(local_home)
    local_env.pop("HANDOFF_DBT_EXECUTION_MODE", None)  # the default mode (watcher cannot run under dag.test)
    try:
        local_run("run", "--date", END.isoformat(), "--parallel", "2", timeout=2400)
        local = admin_conninfo(local_home, local_env)
        assert pushes(local) == (pushed, 0)
        assert mart_hashes(local) == watcher_marts
    finally:
        local_run("warehouse", "down", check=False)
