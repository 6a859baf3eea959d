"""Real Airflow on this machine (``handoff airflow up``): api-server, scheduler (LocalExecutor), dag-processor,
triggerer and the CRM sandbox as supervised processes, metadata in PostgreSQL. Through the public REST API,
authenticated with the generated admin password: a day triggered, run by the scheduler and checked as the
in-process run's test checks it; the same day triggered again changes nothing; two earlier days backfilled by
Airflow's own backfill. Then ``handoff airflow down`` leaves no process behind.

20 to 40 minutes on 2 cores (19 min 42 s, and 38 min 32 s while other work kept the load average near 9; each
dbt task is a process of its own under the LocalExecutor, 15-30 s apiece): ``make test-airflow`` runs it,
``make test`` does not.
"""

from __future__ import annotations

import json
import re
import stat
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.e2e.daily_run import (
    CANARY,
    END,
    admin_conninfo,
    assert_sample_loaded_and_built,
    mart_hashes,
    pushes,
)
from tests.ports import free_port

pytestmark = pytest.mark.airflow_services

DAG = "handoff_daily"
RUN_TIMEOUT = 1800  # one day's run took 5.5 to 10 min here; a bound, not a wait


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _day(day) -> tuple[datetime, datetime]:
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    return start, start + timedelta(days=1)


def _wait_for(api, path: str, done, what: str, timeout: float = RUN_TIMEOUT) -> dict:
    """GET ``path`` until ``done(body)``; the API's state is what is polled, with a bounded deadline. A 5xx answer
    (the api-server losing its database connection for a moment) is printed and polled again."""
    deadline = time.monotonic() + timeout
    while True:
        status, body = api.call("GET", path)
        assert status == 200 or status >= 500, (path, status, body)
        if status >= 500:
            print(f"GET {path}: {status} {body}")
        elif done(body):
            return body
        assert time.monotonic() < deadline, f"timed out after {timeout} s waiting for {what}: {body}"
        time.sleep(2)


def _run_states(api, run_id: str) -> dict[str, str]:
    status, body = api.call("GET", f"/api/v2/dags/{DAG}/dagRuns/{run_id}/taskInstances?limit=200")
    assert status == 200, body
    return {ti["task_id"]: ti["state"] for ti in body["task_instances"]}


def _trigger_and_wait(api, run_id: str, logical: datetime, day) -> dict:
    start, end = _day(day)
    status, body = api.call("POST", f"/api/v2/dags/{DAG}/dagRuns", {
        "dag_run_id": run_id, "logical_date": _iso(logical),
        "data_interval_start": _iso(start), "data_interval_end": _iso(end)})
    assert status == 200, body
    assert (body["data_interval_start"], body["data_interval_end"]) == (_iso(start), _iso(end))
    run = _wait_for(api, f"/api/v2/dags/{DAG}/dagRuns/{run_id}", lambda r: r["state"] in {"success", "failed"},
                    f"run {run_id}")
    states = _run_states(api, run_id)
    assert run["state"] == "success", {t: s for t, s in states.items() if s != "success"}
    return states


def _session_pids(sessions: set[int]) -> list[int]:
    """Live processes in the services' sessions (read from /proc here, not through handoff's own code)."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) in sessions and fields[0] not in {"Z", "X"}:
            out.append(int(entry.name))
    return out


def test_airflow_services_run_a_triggered_day_a_second_trigger_and_a_backfill(home):
    from handoff.airflow_services import Api  # noqa: PLC0415

    home, env, run = home
    env["HANDOFF_AIRFLOW_PORT"] = str(free_port())
    # the test pins its days: the scheduler's own cron runs are off (otherwise unpausing would also run the
    # latest finished day, today's yesterday); triggered and backfill runs are still scheduled and executed by it
    env["AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE"] = "False"
    services = home / "airflow" / "services"
    sessions: set[int] = set()
    try:
        t0 = time.monotonic()
        first_up = run("airflow", "up", timeout=900)
        print(f"handoff airflow up (first): {time.monotonic() - t0:.1f} s")
        sessions = {int(p.read_text()) for p in services.glob("*.pid")}
        assert {p.stem for p in services.glob("*.pid")} == {"api-server", "scheduler", "dag-processor", "triggerer",
                                                            "crm-sandbox"}
        password = re.search(r"Airflow admin password .*: (\S+)$", first_up.stdout, re.M).group(1)
        creds_file = home / "airflow" / "credentials.json"
        assert json.loads(creds_file.read_text())["admin_password"] == password
        assert stat.S_IMODE(creds_file.stat().st_mode) == 0o600
        url = re.search(r"Airflow UI: (http://127\.0\.0\.1:\d+)", first_up.stdout).group(1)
        assert url.endswith(f":{env['HANDOFF_AIRFLOW_PORT']}")
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
        start, end = _day(END)
        states = _trigger_and_wait(api, "rest_first", start, END)
        assert len(states) > 40 and set(states.values()) == {"success"}
        conninfo = admin_conninfo(home, env)
        assert_sample_loaded_and_built(home, conninfo)
        pushed, created_twice = pushes(conninfo)
        assert pushed > 0 and created_twice == 0
        hashes = mart_hashes(conninfo)

        # the same day again: its logical date is taken (one run per logical date), so under the instant the
        # day ended (what `handoff run` uses) and the same interval: nothing new pushed, the marts equal
        status_code, refused = api.call("POST", f"/api/v2/dags/{DAG}/dagRuns", {
            "dag_run_id": "rest_duplicate", "logical_date": _iso(start),
            "data_interval_start": _iso(start), "data_interval_end": _iso(end)})
        assert status_code == 409, refused
        _trigger_and_wait(api, "rest_second", end, END)
        assert pushes(conninfo) == (pushed, 0)
        after = mart_hashes(conninfo)
        assert {k: v for k, v in after.items() if k != "sql_handoff_queue"} == \
            {k: v for k, v in hashes.items() if k != "sql_handoff_queue"}
        assert after["sql_handoff_queue"][0] <= hashes["sql_handoff_queue"][0]

        # Airflow's own backfill of the two days before: two runs, one at a time, both successful
        first_day, last_day = END - timedelta(days=2), END - timedelta(days=1)
        status_code, backfill = api.call("POST", "/api/v2/backfills", {
            "dag_id": DAG, "from_date": _iso(_day(first_day)[0]), "to_date": _iso(_day(last_day)[0]),
            "max_active_runs": 1})
        assert status_code == 200, backfill
        _wait_for(api, f"/api/v2/backfills/{backfill['id']}", lambda b: b.get("completed_at"),
                  "the backfill", timeout=2 * RUN_TIMEOUT)
        runs = api.call("GET", f"/api/v2/dags/{DAG}/dagRuns?run_type=backfill&order_by=logical_date")[1]
        assert [(r["data_interval_start"], r["data_interval_end"], r["state"]) for r in runs["dag_runs"]] == [
            (_iso(_day(d)[0]), _iso(_day(d)[1]), "success") for d in (first_day, last_day)]
        assert pushes(conninfo)[1] == 0  # still no SQL pushed twice

        _assert_no_secret_in(home, [password, CANARY])
    finally:
        down = run("airflow", "down", check=False)
        print(down.stdout, down.stderr)
    assert down.returncode == 0, down.stderr
    assert sessions and _session_pids(sessions) == []
    gone = run("airflow", "status", check=False)
    assert gone.returncode == 3 and "running" not in gone.stdout


def _assert_no_secret_in(home: Path, extra: list[str]) -> None:
    """The admin password, the metadata role's and warehouse roles' passwords and the CRM token appear in no
    service log, no task log and no command line."""
    creds = json.loads((home / "airflow" / "credentials.json").read_text())
    roles = json.loads((home / "warehouse" / "credentials.json").read_text())
    secrets = [*extra, creds["metadata_password"], creds["jwt_secret"], *(c["password"] for c in roles.values())]
    logs = [p for p in (home / "airflow").rglob("*.log") if p.is_file()]
    assert any("push_sqls" in str(p) for p in logs), "no task log to scan"
    for path in logs:
        data = path.read_text(errors="replace")
        for secret in secrets:
            assert secret not in data, f"a secret leaked into {path}"
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            text = cmdline.read_bytes().decode(errors="replace")
        except OSError:
            continue
        for secret in secrets:
            assert secret not in text, f"a secret is on the command line of {cmdline.parent.name}"
