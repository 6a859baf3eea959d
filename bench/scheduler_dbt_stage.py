"""The daily DAG's dbt stage through the real scheduler (``handoff airflow up``), and one plain ``dbt build``.

How the watcher-mode figures in README "Known gaps" were taken (demo sample, day 2026-10-31 rerun):

    export HANDOFF_HOME=... HANDOFF_WAREHOUSE_PORT=... PYTHONPATH=$PWD/plugins
    handoff warehouse up
    handoff sample --out $HANDOFF_HOME/sample --contacts 400 --days 60 --seed 7 --end-date 2026-10-31
    AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE=False HANDOFF_DBT_EXECUTION_MODE=watcher handoff airflow up  # or unset
    .venv/bin/python bench/scheduler_dbt_stage.py run RUN_ID MINUTES   # once untimed (loads), then the timed reruns
    handoff airflow down
    .venv/bin/python bench/scheduler_dbt_stage.py dbt-build LABEL        # with the services down or idle

``run`` triggers the day through the REST API under the logical date day + MINUTES (one run per logical date; the
data interval is always the day), waits for it, and prints the dbt stage (first start to last end of dbt_staging
and the dbt_build.* tasks, as bench/e2e.py's airflow_phases computes it), the run's task span, each dbt task's
seconds and try number, the marts' content hashes and the pushes; all of it also to $HANDOFF_HOME/scratch/RUN_ID.json.
Switching modes means ``handoff airflow down``, then ``up`` with the other HANDOFF_DBT_EXECUTION_MODE, and waiting
until the REST API shows the other graph (the dag-processor re-serialises the DAG).
``dbt-build`` times ``dbt build --exclude tag:definition_lab`` for the day (what dbt_staging and the group build),
target and logs in $HANDOFF_HOME/scratch/dbt_plain.
"""

from __future__ import annotations

import json
import os
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "plugins"))

from tests.e2e.daily_run import END, admin_conninfo, mart_hashes, pushes  # noqa: E402
from tests.e2e.rest_runs import DAG, day_interval, iso, wait_for  # noqa: E402


def _ts(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def run(home: Path, run_id: str, minutes: int) -> dict:
    from handoff.airflow_api import Api  # noqa: PLC0415
    from handoff.airflow_services import read_state  # noqa: PLC0415

    creds = json.loads((home / "airflow" / "credentials.json").read_text())
    api = Api.login(read_state().url, "admin", creds["admin_password"])
    api.call("PATCH", f"/api/v2/dags/{DAG}", {"is_paused": False})
    start, end = day_interval(END)
    t0 = time.monotonic()
    status, body = api.call("POST", f"/api/v2/dags/{DAG}/dagRuns", {
        "dag_run_id": run_id, "logical_date": iso(start + timedelta(minutes=minutes)),
        "data_interval_start": iso(start), "data_interval_end": iso(end)})
    assert status == 200, body
    state = wait_for(api, f"/api/v2/dags/{DAG}/dagRuns/{run_id}", lambda r: r["state"] in {"success", "failed"},
                     run_id)["state"]
    wall = time.monotonic() - t0
    status, body = api.call("GET", f"/api/v2/dags/{DAG}/dagRuns/{run_id}/taskInstances?limit=500")
    assert status == 200, body
    tis = [t for t in body["task_instances"] if t["start_date"] and t["end_date"]]
    dbt = [t for t in tis if t["task_id"] == "dbt_staging" or t["task_id"].startswith("dbt_build.")]

    def span(chosen):
        return (max(_ts(t["end_date"]) for t in chosen) - min(_ts(t["start_date"]) for t in chosen)).total_seconds()

    conninfo = admin_conninfo(home, os.environ)
    return {"run_id": run_id, "state": state, "wall_s": round(wall, 1), "dbt_stage_s": round(span(dbt), 1),
            "tasks_span_s": round(span(tis), 1), "dbt_tasks": len(dbt), "tasks": len(body["task_instances"]),
            "not_success": {t["task_id"]: t["state"] for t in body["task_instances"] if t["state"] != "success"},
            "task_seconds": sorted(((t["task_id"], round((_ts(t["end_date"]) - _ts(t["start_date"])).total_seconds(),
                                                         1), t["try_number"]) for t in dbt), key=lambda x: -x[1]),
            "marts": mart_hashes(conninfo), "pushes": pushes(conninfo), "load": os.getloadavg()}


def dbt_build(home: Path, label: str) -> dict:
    from handoff import dbt_runner  # noqa: PLC0415

    start, end = day_interval(END)
    work = home / "scratch" / "dbt_plain"
    env = {"DBT_TARGET_PATH": str(work / "target"), "DBT_LOG_PATH": str(work / "logs"),
           **dbt_runner.interval_env(start, end)}
    t0 = time.perf_counter()
    dbt_runner.run(["build", "--exclude", "tag:definition_lab"], quiet=True, env=env)
    return {"label": label, "seconds": round(time.perf_counter() - t0, 2), "load": os.getloadavg()}


def main(argv: list[str]) -> None:
    home = Path(os.environ["HANDOFF_HOME"])
    out = run(home, argv[1], int(argv[2])) if argv[0] == "run" else dbt_build(home, argv[1])
    (home / "scratch").mkdir(exist_ok=True)
    (home / "scratch" / f"{argv[1]}.json").write_text(json.dumps(out, indent=1, default=str))
    print(json.dumps({k: v for k, v in out.items() if k not in ("task_seconds", "marts")}, default=str))


if __name__ == "__main__":
    main(sys.argv[1:])
