"""What the tests of ``handoff airflow up``'s services share: a day triggered through Airflow's public REST API and
waited for, what ``down`` must leave (no process in the services' sessions) and what no log or command line may
hold (a secret)."""

from __future__ import annotations

import json
import re
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from tests.ports import free_port

DAG = "handoff_daily"
RUN_TIMEOUT = 1800  # one day's run took 5.5 to 10 min here; a bound, not a wait


def first_up(home: Path, env: dict, run, *args: str) -> tuple[str, str, set[int]]:
    """The first ``handoff airflow up ARGS`` of ``home`` (the one that prints the admin password), on a free port,
    with the scheduler's own cron runs off: the tests pin their days (otherwise unpausing would also run the latest
    finished day, today's yesterday); triggered and backfill runs are still scheduled and executed by it. Returns
    (the UI's URL, the admin password, the services' sessions)."""
    env["HANDOFF_AIRFLOW_PORT"] = str(free_port())
    env["AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE"] = "False"
    t0 = time.monotonic()
    up = run("airflow", "up", *args, timeout=900)
    print(f"handoff airflow up {' '.join(args)} (first): {time.monotonic() - t0:.1f} s")
    sessions = {int(p.read_text()) for p in (home / "airflow" / "services").glob("*.pid")}
    password = re.search(r"Airflow admin password .*: (\S+)$", up.stdout, re.M).group(1)
    url = re.search(r"Airflow UI: (http://127\.0\.0\.1:\d+)", up.stdout).group(1)
    assert url.endswith(f":{env['HANDOFF_AIRFLOW_PORT']}")
    return url, password, sessions


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def day_interval(day) -> tuple[datetime, datetime]:
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    return start, start + timedelta(days=1)


def wait_for(api, path: str, done, what: str, timeout: float = RUN_TIMEOUT) -> dict:
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


def run_states(api, run_id: str) -> dict[str, str]:
    status, body = api.call("GET", f"/api/v2/dags/{DAG}/dagRuns/{run_id}/taskInstances?limit=200")
    assert status == 200, body
    return {ti["task_id"]: ti["state"] for ti in body["task_instances"]}


def trigger_and_wait(api, run_id: str, logical: datetime, day) -> dict:
    start, end = day_interval(day)
    status, body = api.call("POST", f"/api/v2/dags/{DAG}/dagRuns", {
        "dag_run_id": run_id, "logical_date": iso(logical),
        "data_interval_start": iso(start), "data_interval_end": iso(end)})
    assert status == 200, body
    assert (body["data_interval_start"], body["data_interval_end"]) == (iso(start), iso(end))
    run = wait_for(api, f"/api/v2/dags/{DAG}/dagRuns/{run_id}", lambda r: r["state"] in {"success", "failed"},
                    f"run {run_id}")
    states = run_states(api, run_id)
    assert run["state"] == "success", {t: s for t, s in states.items() if s != "success"}
    return states


def session_pids(sessions: set[int]) -> list[int]:
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


def assert_no_secret_in(home: Path, extra: list[str]) -> None:
    """The admin password, the metadata role's, Redis's and the warehouse roles' passwords and the CRM token appear
    in no service log, no task log and no command line."""
    creds = json.loads((home / "airflow" / "credentials.json").read_text())
    roles = json.loads((home / "warehouse" / "credentials.json").read_text())
    secrets = [*extra, creds["metadata_password"], creds["jwt_secret"], creds["redis_password"],
               *(c["password"] for c in roles.values())]
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
