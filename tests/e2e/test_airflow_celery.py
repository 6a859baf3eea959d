"""The same DAG on Airflow's CeleryExecutor (``handoff airflow up --executor celery``): Redis from the Debian package
as the broker on 127.0.0.1, two supervised Celery workers, the metadata database as Celery's result backend. A day
triggered through the public REST API runs on the workers (each task's Celery message is in one worker's log, its
Celery result in the result backend) and builds marts equal, by content hash, to a LocalExecutor run of the same day
on the same sample (``handoff run --parallel 2``, in a HANDOFF_HOME of its own); each SQL is pushed once. While the
scheduler runs, an in-process ``handoff run`` of its home is refused. ``handoff airflow down`` leaves no process
behind, Redis and the workers included.

10 min 02 s on 2 cores (``up`` 37 s, the day on the workers about 7 min, the LocalExecutor run of it the rest); about
30 min or more while other work kept the load average near 10: ``make test-celery`` runs it, ``make test`` does not.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import psycopg
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
from tests.waiting import wait_until

pytestmark = pytest.mark.airflow_celery

WORKERS = ("worker-1", "worker-2")
# what the Celery provider's task logs on the worker that executes a task instance
WORKLOAD = re.compile(r"Executing workload in Celery: .*? task_id='([^']+)', dag_id='handoff_daily', run_id='([^']+)'")


def _ran_on(home: Path, run_id: str) -> dict[str, list[str]]:
    """{worker: the task ids of ``run_id`` it executed}, read from each worker's own log."""
    out = {}
    for name in WORKERS:
        text = (home / "airflow" / "services" / f"{name}.log").read_text(errors="replace")
        out[name] = sorted(task for task, run in WORKLOAD.findall(text) if run == run_id)
    return out


def _celery_results(home: Path, env, run_id: str) -> dict[str, str]:
    """{task id: the status of its Celery result}: a task instance's external_executor_id is the id of the Celery
    task that ran it, and the result backend is the table celery_taskmeta of the metadata database."""
    creds = json.loads((home / "airflow" / "credentials.json").read_text())
    conninfo = psycopg.conninfo.make_conninfo(host="127.0.0.1", port=env["HANDOFF_WAREHOUSE_PORT"],
                                              dbname="airflow_meta", user="handoff_airflow",
                                              password=creds["metadata_password"])
    with psycopg.connect(conninfo) as conn:
        return dict(conn.execute(
            "select ti.task_id, coalesce(r.status, 'no Celery result') from task_instance ti"
            " left join celery_taskmeta r on r.task_id = ti.external_executor_id"
            " where ti.dag_id = %s and ti.run_id = %s", [DAG, run_id]).fetchall())


def _redis_servers(home: Path) -> list[str]:
    """Command lines of live redis-server processes listening where this home's Redis does (redis-server sets its
    process title to '<binary> 127.0.0.1:<port>')."""
    port = json.loads((home / "airflow" / "services" / "state.json").read_text())["redis_port"]
    out = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            text = cmdline.read_bytes().decode(errors="replace").replace("\0", " ")
        except OSError:
            continue
        if "redis-server" in text and f"127.0.0.1:{port}" in text:
            out.append(text)
    return out


def test_the_celery_executor_builds_the_marts_the_local_executor_builds_and_pushes_each_sql_once(
        home, tmp_path_factory):
    from handoff.airflow_api import Api  # noqa: PLC0415

    home, env, run = home
    services = home / "airflow" / "services"
    sessions: set[int] = set()
    try:
        url, password, sessions = first_up(home, env, run, "--executor", "celery")
        assert {p.stem for p in services.glob("*.pid")} == {"api-server", "scheduler", "dag-processor", "triggerer",
                                                            "crm-sandbox", "redis", *WORKERS}
        status = run("airflow", "status").stdout
        for name in ("redis", *WORKERS, "scheduler"):
            assert re.search(rf"^{name}\s+running \(pid \d+", status, re.M), status
        assert re.search(r"^executor: CeleryExecutor, broker Redis on 127\.0\.0\.1:\d+ .*, 2 workers × 1 task",
                         status, re.M), status
        assert _redis_servers(home)

        # the scheduler holds the run lock: an in-process run of this home is refused, and does nothing
        refused = run("run", "--date", END.isoformat(), check=False)
        assert refused.returncode == 1, refused.stderr[-3000:]
        assert "Airflow's scheduler (handoff airflow up)" in refused.stderr
        assert "trigger the day in Airflow instead" in refused.stderr

        api = Api.login(url, "admin", password)
        assert api.call("PATCH", f"/api/v2/dags/{DAG}", {"is_paused": False})[0] == 200
        start, _ = day_interval(END)
        states = trigger_and_wait(api, "celery_day", start, END)
        assert len(states) > 40 and set(states.values()) == {"success"}

        # it ran on the Celery workers: every task instance once, in one worker's log, both workers busy, and
        # each one's Celery result a success in the result backend (a LocalExecutor run leaves none of these)
        ran_on = _ran_on(home, "celery_day")
        print({worker: len(tasks) for worker, tasks in ran_on.items()})
        assert sorted(ran_on["worker-1"] + ran_on["worker-2"]) == sorted(states)
        assert ran_on["worker-1"] and ran_on["worker-2"]
        # (a task's Celery result is stored once its worker is done with it, a moment after the task instance's
        # own state, which ends the run: the last one may still say STARTED)
        wait_until(lambda: _celery_results(home, env, "celery_day") == dict.fromkeys(states, "SUCCESS"),
                   "every task's Celery result to be SUCCESS", timeout=120)

        conninfo = admin_conninfo(home, env)
        assert_sample_loaded_and_built(home, conninfo)
        pushed, created_twice = pushes(conninfo)
        assert pushed > 0 and created_twice == 0
        celery_marts = mart_hashes(conninfo)
        print("marts after the Celery run:", celery_marts)
        creds = json.loads((home / "airflow" / "credentials.json").read_text())
        assert_no_secret_in(home, [password, CANARY, creds["redis_password"]])
    finally:
        down = run("airflow", "down", check=False)
        print(down.stdout, down.stderr)
    assert down.returncode == 0, down.stderr
    assert sessions and session_pids(sessions) == []
    assert _redis_servers(home) == []

    # the LocalExecutor run of the same day on the same sample, in a home of its own: the same marts, to the byte,
    # and the same SQLs pushed, once each
    local_home = tmp_path_factory.mktemp("local_executor_home")
    local_env, local_run = prepared_home(local_home)
    try:
        # 2 to 16 min here, with other work on the machine (load average near 10): a bound, not a wait
        local_run("run", "--date", END.isoformat(), "--parallel", "2", timeout=2400)
        local = admin_conninfo(local_home, local_env)
        assert pushes(local) == (pushed, 0)
        assert mart_hashes(local) == celery_marts
    finally:
        local_run("warehouse", "down", check=False)
