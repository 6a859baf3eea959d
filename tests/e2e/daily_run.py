"""What the end-to-end tests share: a fresh HANDOFF_HOME (its own PostgreSQL cluster and a small sample), the
``handoff`` command run in it, and the checks of a day's outcome (everything loaded and built, SQLs pushed once,
the marts' content hashes)."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from datetime import date
from pathlib import Path

import psycopg

from tests.ports import free_port

REPO = Path(__file__).resolve().parents[2]
END = date(2026, 10, 31)
MARTS = ["dim_contacts", "fct_contact_engagement_daily", "fct_contact_scores_daily", "fct_stage_transitions",
         "mql_sql_conversion_cohorts", "mql_sql_lagged_conversion", "sql_handoff_queue"]

CANARY = "canary-token-5f1c0e7a9b3d4e21"


def prepared_home(home: Path):
    """Set up ``home`` as a new user's HANDOFF_HOME: its own cluster on a free port, the 400-contact × 60-day
    sample ending END, and a canary CRM token (the sandbox's). Returns (env, run)."""
    env = {**os.environ, "HANDOFF_HOME": str(home), "HANDOFF_WAREHOUSE_PORT": str(free_port()),
           "PYTHONPATH": str(REPO / "plugins"), "HANDOFF_RETRY_DELAY_SECONDS": "1"}
    for key in list(env):
        if key.startswith(("AIRFLOW_CONN_", "AIRFLOW__", "HANDOFF_WAREHOUSE_URL", "HANDOFF_AIRFLOW_")):
            env.pop(key)
    run = runner(env)
    # a canary CRM token: handoff run passes it to the DAG through the handoff_crm Airflow connection
    (home / "crm").mkdir()
    (home / "crm" / "token").write_text(CANARY)
    run("warehouse", "up")
    run("sample", "--out", str(home / "sample"), "--contacts", "400", "--days", "60", "--seed", "7",
        "--end-date", END.isoformat())
    return env, run


def runner(env):
    def run(*args, check=True, timeout=900):
        res = subprocess.run([sys.executable, "-m", "handoff.cli", *args], env=env, cwd=REPO, capture_output=True,
                             text=True, timeout=timeout)
        if check and res.returncode != 0:
            raise AssertionError(f"handoff {' '.join(args)} exited {res.returncode}\n{res.stdout[-3000:]}\n"
                                 f"{res.stderr[-6000:]}")
        return res
    return run


def admin_conninfo(home: Path, env) -> str:
    creds = json.loads((home / "warehouse" / "credentials.json").read_text())["admin"]
    return psycopg.conninfo.make_conninfo(host="127.0.0.1", port=env["HANDOFF_WAREHOUSE_PORT"], dbname="handoff",
                                          user=creds["user"], password=creds["password"])


def mart_hashes(conninfo: str) -> dict[str, tuple[int, str]]:
    out = {}
    with psycopg.connect(conninfo) as conn:
        for mart in MARTS:
            out[mart] = conn.execute(
                f"select count(*), coalesce(md5(string_agg(t::text, '|' order by t::text)), '')"
                f" from marts.{mart} t").fetchone()
    return out


def assert_sample_loaded_and_built(home: Path, conninfo: str) -> None:
    """Every analytics event of the sample landed, none quarantined; every CRM contact reached dim_contacts once;
    some contacts became SQLs."""
    manifest = json.loads((home / "sample" / "manifest.json").read_text())
    with psycopg.connect(conninfo) as conn:
        # every analytics event of the sample landed (all 60 day folders: late files of earlier days included)
        events = sum(1 for f in (home / "sample" / "analytics").rglob("*.jsonl.gz")
                     for _ in gzip.open(f, "rt"))
        loaded, bad = conn.execute("select count(*), (select count(*) from raw.quarantine)"
                                   " from raw.analytics_events").fetchone()
        assert (loaded, bad) == (events, 0)
        log = conn.execute("select sum(rows_read), sum(rows_loaded), sum(rows_quarantined) from ops.load_log"
                           " where source_kind = 'analytics_file' and status = 'loaded'").fetchone()
        assert log == (events, events, 0)
        # every CRM contact made it through to the dimension, once
        contacts = conn.execute("select count(distinct record_id) from raw.crm_contacts").fetchone()[0]
        assert contacts == manifest["contacts"]
        assert conn.execute("select count(*) from marts.dim_contacts").fetchone()[0] == contacts
        sqls = conn.execute("select count(*) from marts.dim_contacts where sql_at is not null").fetchone()[0]
    assert sqls > 0


def pushes(conninfo: str) -> tuple[int, int]:
    """(SQLs whose CRM task was created, SQLs whose task was created more than once: 0 when each went once)."""
    with psycopg.connect(conninfo) as conn:
        pushed = conn.execute("select count(distinct dedupe_key) from ops.crm_push_log"
                              " where action = 'create_task' and status = 'succeeded'").fetchone()[0]
        twice = conn.execute(
            "select count(*) from (select dedupe_key from ops.crm_push_log where action = 'create_task'"
            " and status = 'succeeded' group by 1 having count(*) > 1) d").fetchone()[0]
    return pushed, twice
