"""Real Airflow on this machine (``handoff airflow up``): api-server, scheduler (LocalExecutor), dag-processor,
triggerer and the CRM sandbox as supervised processes, metadata in PostgreSQL. Through the public REST API,
authenticated with the generated admin password: a day triggered, run by the scheduler and checked as the
in-process run's test checks it; the same day triggered again changes nothing; two earlier days backfilled by
Airflow's own backfill. Then ``handoff airflow down`` leaves no process behind.

About 5 minutes on 2 cores, quiet: 4 min 48 s at ``8d03a8d``, whose scheduler imports dbt before it forks the
tasks, against 7 min 24 s at ``035c9dd`` (each task importing dbt itself) and 19 min 42 s in November. Each dbt task
is still a process of its own under the LocalExecutor: ``make test-airflow`` runs it, ``make test`` does not.
"""

from __future__ import annotations

import json
import re
import stat
from datetime import timedelta

import pytest

from tests.e2e.daily_run import (
    CANARY,
    END,
    admin_conninfo,
    assert_sample_loaded_and_built,
    mart_hashes,
    pushes,
)
from tests.e2e.rest_runs import (
    DAG,
    RUN_TIMEOUT,
    assert_no_secret_in,
    day_interval,
    first_up,
    iso,
    session_pids,
    trigger_and_wait,
    wait_for,
)

pytestmark = pytest.mark.airflow_services

def test_airflow_services_run_a_triggered_day_a_second_trigger_and_a_backfill(home):
    from handoff.airflow_api import Api  # noqa: PLC0415

    home, env, run = home
    services = home / "airflow" / "services"
    sessions: set[int] = set()
    try:
        url, password, sessions = first_up(home, env, run)
        assert {p.stem for p in services.glob("*.pid")} == {"api-server", "scheduler", "dag-processor", "triggerer",
                                                            "crm-sandbox"}
        creds_file = home / "airflow" / "credentials.json"
        assert json.loads(creds_file.read_text())["admin_password"] == password
        assert stat.S_IMODE(creds_file.stat().st_mode) == 0o600
        # again: nothing new started, the password not shown again
        again = run("airflow", "up")
        assert "password" not in again.stdout and "started" not in again.stderr
        status = run("airflow", "status")
        for name in ("api-server", "scheduler", "dag-processor", "triggerer", "crm-sandbox"):
            assert re.search(rf"^{name}\s+running \(pid \d+", status.stdout, re.M), status.stdout
        assert f"UI and REST API: {url}" in status.stdout
        assert "scheduler healthy" in status.stdout and "dag_processor healthy" in status.stdout

        assert Api(url).call("GET", f"/api/v2/dags/{DAG}")[0] == 401  # the API wants a token
        api = Api.login(url, "admin", password)
        dag = api.call("GET", f"/api/v2/dags/{DAG}")[1]
        assert dag["is_paused"] is True and dag["timetable_summary"] == "0 0 * * *", dag
        assert api.call("PATCH", f"/api/v2/dags/{DAG}", {"is_paused": False})[0] == 200

        # a day, triggered for its data interval [END, END+1) under the logical date the scheduler gives it
        start, end = day_interval(END)
        states = trigger_and_wait(api, "rest_first", start, END)
        assert len(states) > 40 and set(states.values()) == {"success"}
        conninfo = admin_conninfo(home, env)
        assert_sample_loaded_and_built(home, conninfo)
        pushed, created_twice = pushes(conninfo)
        assert pushed > 0 and created_twice == 0
        hashes = mart_hashes(conninfo)

        # the same day again: its logical date is taken (one run per logical date), so under the instant the
        # day ended (what `handoff run` uses) and the same interval: nothing new pushed, the marts equal
        status_code, refused = api.call("POST", f"/api/v2/dags/{DAG}/dagRuns", {
            "dag_run_id": "rest_duplicate", "logical_date": iso(start),
            "data_interval_start": iso(start), "data_interval_end": iso(end)})
        assert status_code == 409, refused
        trigger_and_wait(api, "rest_second", end, END)
        assert pushes(conninfo) == (pushed, 0)
        after = mart_hashes(conninfo)
        assert {k: v for k, v in after.items() if k != "sql_handoff_queue"} == \
            {k: v for k, v in hashes.items() if k != "sql_handoff_queue"}
        assert after["sql_handoff_queue"][0] <= hashes["sql_handoff_queue"][0]

        # Airflow's own backfill of the two days before: two runs, one at a time, both successful
        first_day, last_day = END - timedelta(days=2), END - timedelta(days=1)
        status_code, backfill = api.call("POST", "/api/v2/backfills", {
            "dag_id": DAG, "from_date": iso(day_interval(first_day)[0]), "to_date": iso(day_interval(last_day)[0]),
            "max_active_runs": 1})
        assert status_code == 200, backfill
        wait_for(api, f"/api/v2/backfills/{backfill['id']}", lambda b: b.get("completed_at"),
                  "the backfill", timeout=2 * RUN_TIMEOUT)
        runs = api.call("GET", f"/api/v2/dags/{DAG}/dagRuns?run_type=backfill&order_by=logical_date")[1]
        assert [(r["data_interval_start"], r["data_interval_end"], r["state"]) for r in runs["dag_runs"]] == [
            (iso(day_interval(d)[0]), iso(day_interval(d)[1]), "success") for d in (first_day, last_day)]
        assert pushes(conninfo)[1] == 0  # still no SQL pushed twice

        assert_no_secret_in(home, [password, CANARY])
    finally:
        down = run("airflow", "down", check=False)
        print(down.stdout, down.stderr)
    assert down.returncode == 0, down.stderr
    assert sessions and session_pids(sessions) == []
    gone = run("airflow", "status", check=False)
    assert gone.returncode == 3 and "running" not in gone.stdout
