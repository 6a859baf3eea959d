"""The e2e_day stage's pieces (bench/run.py): put the scratch database in the state "history loaded, the last day's
data new", run ``handoff run --date <last day>`` on it, and read the run's phases back from Airflow's metadata DB.

The state before the timed run (untimed, redone for every run so each --runs trial starts the same):
- analytics: the ledger and load log say every file of the earlier days is loaded, under the paths the DAG's
  loader sees ($HANDOFF_HOME/sample/analytics/...); the last day's rows are gone from raw, so its files load new,
  and from the staged and attributed events (make_day_new_to_dbt), so they are new to the dbt models too;
- CRM: the last day's record versions are gone from raw.crm_* and every watermark is the start of the last day,
  so the sync is incremental over that one day (the sandbox is re-seeded from the sample);
- push: every SQL before the last day is acknowledged in ops.crm_push_log, so only the new day's SQLs go out;
- a fresh Airflow home (metadata DB migrated) and dbt manifest, so the run does not pay for first-time setup.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
from psycopg import sql

REPO = Path(__file__).resolve().parents[1]
CRM_OBJECTS = ("owners", "companies", "contacts", "deals", "meetings", "calls")  # handoff.extract.crm_api
HISTORY_RUN_ID = "bench-history"  # the push-log rows that stand for the earlier days' runs
ROLE_PASSWORDS = {"loader": "HANDOFF_LOADER_PASSWORD", "transformer": "HANDOFF_TRANSFORMER_PASSWORD",
                  "pusher": "HANDOFF_PUSHER_PASSWORD", "bi_reader": "HANDOFF_BI_READER_PASSWORD"}
DAG_ID = "handoff_daily"


def make_home(work: Path, sample: Path) -> Path:
    """A fresh $HANDOFF_HOME whose sample/ is the bench's sample (a symlink): the DAG's landing folder."""
    home = work / "e2e_home"
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    (home / "sample").symlink_to(sample.resolve(), target_is_directory=True)
    return home


def run_env(tgt, home: Path) -> dict[str, str]:
    """The environment of `handoff run`: the bench database by URL, the cluster's CURRENT role passwords (so
    nothing is generated or changed cluster-wide), no inherited Airflow settings, no CRM connection (sandbox)."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("AIRFLOW_CONN_", "AIRFLOW__", "AIRFLOW_HOME", "HANDOFF_"))}
    env.update({"HANDOFF_HOME": str(home), "HANDOFF_WAREHOUSE_URL": tgt.url("admin"),
                "HANDOFF_RETRY_DELAY_SECONDS": "5", "PYTHONPATH": str(REPO / "plugins")})
    for role, var in ROLE_PASSWORDS.items():
        env[var] = tgt.credentials[role]["password"]
    return env


def secrets_of(env: dict[str, str]) -> list[str]:
    """The passwords in ``env``, to scrub from anything the bench prints."""
    from urllib.parse import unquote, urlsplit  # noqa: PLC0415

    found = [env[v] for v in ROLE_PASSWORDS.values()]
    admin = urlsplit(env["HANDOFF_WAREHOUSE_URL"]).password
    return [s for s in [*found, admin, unquote(admin or "")] if s]


def scrub(text: str, secrets: list[str]) -> str:
    for s in secrets:
        text = text.replace(s, "***")
    return text


PREPARE_SCRIPT = """
from handoff import airflow_env, airflow_run, local_services
airflow_env.apply()
airflow_run.ensure_metadata_db(log=lambda *_: None)
airflow_run.ensure_dbt_manifest(log=lambda *_: None)
local_services.ensure_sandbox_state(log=lambda *_: None)
"""


def prepare_home(env: dict[str, str]) -> None:
    """First-time work of a new HANDOFF_HOME, untimed: Airflow's metadata DB, the dbt manifest, the CRM sandbox's
    state seeded from $HANDOFF_HOME/sample/crm (handoff.local_services.ensure_sandbox_state)."""
    res = subprocess.run([sys.executable, "-c", PREPARE_SCRIPT], env=env, cwd=REPO, capture_output=True, text=True,
                         check=False)
    if res.returncode != 0:
        raise RuntimeError("preparing the e2e HANDOFF_HOME failed:\n" + scrub(res.stderr[-3000:], secrets_of(env)))


def _day_of(source: str) -> tuple[str, str]:
    """(day folder, file name) of a loaded file's path, whichever folder it was loaded from."""
    path = Path(source)
    return path.parent.name, path.name


def reset_analytics(admin: str, landing: Path, last_day: str) -> dict:
    """Load state = every file before ``last_day`` loaded (ledger + load_log under the DAG's paths, one batch per
    file as the loader writes them, counts from raw), the last day's rows removed from raw so its files load new.

    Rebuilt from raw.analytics_events rather than trusted: the plain-COPY stage truncates the ledger, the log and
    the quarantine, and the load stage recorded the files under the bench's sample path, not $HANDOFF_HOME's."""
    from handoff.load import analytics, batches  # noqa: PLC0415
    from handoff.load.landing import is_data_name  # noqa: PLC0415 - the loader's own rule (any letter case)

    with psycopg.connect(admin) as conn, conn.cursor() as cur:
        loaded = {}
        for source, batch_id, n in cur.execute(
                "select _source, _batch_id, count(*) from raw.analytics_events group by 1, 2").fetchall():
            loaded[_day_of(source)] = (batch_id, n)
        quarantined = {_day_of(s): n for s, n in cur.execute(
            "select _source, count(*) from raw.quarantine where _source like '%/analytics/%' group by 1").fetchall()}
        last_sources = [s for (s,) in cur.execute("select distinct _source from raw.analytics_events").fetchall()
                        if _day_of(s)[0] == last_day]
        removed = cur.execute("delete from raw.analytics_events where _source = any(%s)", [last_sources]).rowcount
        cur.execute("delete from raw.quarantine where _source = any(%s)", [last_sources])
        cur.execute("delete from ops.file_ledger")
        cur.execute("delete from ops.load_log where source_kind = %s", [analytics.SOURCE_KIND])
        now, seen, files = datetime.now(UTC), set(), 0
        for folder in sorted(p for p in landing.iterdir() if p.is_dir() and p.name < last_day):
            start = datetime.fromisoformat(folder.name).replace(tzinfo=UTC)
            for path in sorted(f for f in folder.iterdir() if is_data_name(f.name)):
                sha = batches.sha256_file(path)
                if sha in seen:
                    continue  # the same bytes twice: the loader skips the second copy
                seen.add(sha)
                batch_id, n = loaded.get((folder.name, path.name), (uuid.uuid4(), 0))
                bad = quarantined.get((folder.name, path.name), 0)
                cur.execute(
                    "insert into ops.load_log (batch_id, source, source_kind, data_interval_start, data_interval_end,"
                    " started_at, finished_at, rows_read, rows_loaded, rows_quarantined, status, sha256)"
                    " values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, 'loaded', %s)",
                    [batch_id, str(path), analytics.SOURCE_KIND, start, start + timedelta(days=1), now, now,
                     n + bad, n, bad, sha])
                cur.execute("insert into ops.file_ledger (sha256, path, size_bytes, file_date, batch_id, loaded_at,"
                            " relative_path) values (%s, %s, %s, %s, %s, %s, %s)",
                            [sha, str(path), path.stat().st_size, start.date(), batch_id, now,
                             f"{folder.name}/{path.name}"])
                files += 1
        conn.commit()
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute("vacuum analyze raw.analytics_events")  # as after a night of autovacuum, not in the timing
    return {"history_files": files, "last_day_rows_removed": removed,
            "last_day_files": sum(1 for f in (landing / last_day).iterdir() if is_data_name(f.name))}


def make_day_new_to_dbt(admin: str, last_day: str) -> dict:
    """The last day's events new to the dbt models, as in a real daily run (the history built by earlier runs, the
    day's file loaded that morning), rather than a re-delivery of events the full build already holds, which
    replaces 127,000 scattered rows at tier M: another and costlier path. The day's events leave the staged and
    attributed events, their visitors go to the attribution's change log from their earliest such event (the
    sessions, facts and touchpoints the run recomputes, as a run with the new day does), and the day's load batches
    leave the applied-input copies (dbt_project/macros/change_logs.sql), and the day's rows leave the daily
    tables (until commit e88d73f they stayed, and the timed build first deleted its own day's 750,319 rows at tier M).
    Untimed; the next dbt build stages the day's raw rows again."""
    with psycopg.connect(admin) as conn, conn.cursor() as cur:
        # the day's load batches from the loader's log (a batch per file), not by a scan of every raw event (13 GB
        # at tier M, which also pushed the pages the build reads out of the OS's cache)
        cur.execute("create temp table day_batches on commit drop as select batch_id as _batch_id from ops.load_log"
                    " where source_kind = 'analytics_file' and split_part(source, '/', -2) = %s", [last_day])
        cur.execute("create temp table day_events on commit drop as select event_id from"
                    " staging.stg_analytics__events where _batch_id in (select _batch_id from day_batches)")
        logged = cur.execute(
            "insert into intermediate.int_events_attributed__changes (changed_at, key, changed_from)"
            " select now(), visitor_key, min(event_at) from intermediate.int_events_attributed"
            " where event_id in (select event_id from day_events) and visitor_key is not null"
            " group by visitor_key").rowcount
        cur.execute("delete from intermediate.int_events_attributed where event_id in (select event_id from"
                    " day_events)")
        staged = cur.execute("delete from staging.stg_analytics__events where event_id in (select event_id from"
                             " day_events)").rowcount
        for model in ("int_events_attributed", "int_identities_stitched"):
            cur.execute(sql.SQL("delete from intermediate.{} where kind = 'batch' and key::uuid in"
                                " (select _batch_id from day_batches)").format(sql.Identifier(f"{model}__applied")))
        # the day's rows leave the daily tables too: a real run finds none there (it writes the day first)
        daily = daily_tables(cur)
        daily_rows = 0
        for table, day_column in daily:
            daily_rows += cur.execute(sql.SQL("delete from {} where {} = %s").format(
                table, sql.Identifier(day_column)), [last_day]).rowcount
        conn.commit()
    # and leave no dead rows behind (a real run finds none: its day was never there). In the daily tables' right
    # edge the max(day) each model reads first stepped over 422,633 dead rule-hit entries (5.5 s); the staged and
    # attributed events' probes for the day's 127,414 event ids would each find a dead entry and visit its heap page.
    # index_cleanup on: a plain VACUUM leaves the index entries when the dead rows sit on under 2% of the table's
    # pages (PostgreSQL 14's bypass; shown on a 300,000-row table with 1% of its pages dead), as a day's rows,
    # appended together, can
    events = [sql.Identifier("staging", "stg_analytics__events"),
              sql.Identifier("intermediate", "int_events_attributed")]
    with psycopg.connect(admin, autocommit=True) as conn:
        tables = sql.SQL(", ").join([table for table, _ in daily] + events)
        conn.execute(sql.SQL("vacuum (index_cleanup on) {}").format(tables))
    return {"day_events_unstaged": staged, "day_visitors_logged": logged, "day_daily_rows_removed": daily_rows}


def daily_tables(cur) -> list[tuple[sql.Identifier, str]]:
    """The daily tables (a row per contact, or per rule, per day) and their day columns: the dbt project's own list
    (vars.tests_on_recomputed_days in dbt_project.yml), each table found in the schema dbt built it in."""
    import yaml  # noqa: PLC0415 - dbt's dependency; only the bench's setup reads the project file

    days = yaml.safe_load((REPO / "dbt_project" / "dbt_project.yml").read_text())["vars"]["tests_on_recomputed_days"]
    found = cur.execute("select table_schema, table_name from information_schema.tables"
                        " where table_name = any(%s) and table_type = 'BASE TABLE'", [list(days)]).fetchall()
    assert len(found) == len(days), (found, days)
    return [(sql.Identifier(schema, table), days[table]) for schema, table in found]


def reset_crm(admin: str, start: datetime, end: datetime) -> dict:
    """The CRM as synced up to ``start``: live record versions in the sync's window (start, end] leave raw.crm_*
    (the sync brings them back; one updated at exactly ``start`` belongs to the day before) and every object
    type's watermark is ``start``."""
    removed = {}
    with psycopg.connect(admin) as conn, conn.cursor() as cur:
        for obj in CRM_OBJECTS:
            removed[obj] = cur.execute(
                sql.SQL("delete from raw.{} where not archived and updated_at > %s and updated_at <= %s").format(
                    sql.Identifier(f"crm_{obj}")), [start, end]).rowcount
        cur.execute("delete from ops.crm_watermarks")
        for obj in CRM_OBJECTS:
            cur.execute("insert into ops.crm_watermarks (object_type, watermark, batch_id, updated_at)"
                        " values (%s, %s, %s, clock_timestamp())", [obj, start, uuid.uuid4()])
        conn.commit()
    return {"crm_rows_removed": sum(removed.values()), "crm_rows_removed_by_object": removed}


def acknowledge_history(admin: str, start: datetime) -> dict:
    """Every SQL before ``start`` acknowledged (a succeeded create_task row, as the earlier runs' pushes would have
    left); push-log rows of earlier e2e runs go, so each trial pushes the same new SQLs."""
    with psycopg.connect(admin) as conn, conn.cursor() as cur:
        cur.execute("delete from ops.crm_push_log where run_id <> %s", [HISTORY_RUN_ID])
        cur.execute("delete from ops.crm_push_preview")
        acked = cur.execute(
            "insert into ops.crm_push_log (run_id, contact_id, sql_at, dedupe_key, action, attempt, status,"
            " crm_object_id, reason, crm_contact_id, finished_at)"
            " select %s, contact_id, sql_at, dedupe_key, 'create_task', 1, 'succeeded', 'bench-' || dedupe_key,"
            " 'bench e2e_day: acknowledged before the run', crm_contact_id, clock_timestamp()"
            " from marts.sql_handoff_queue where sql_at < %s"
            " on conflict (dedupe_key) where action = 'create_task' and status = 'succeeded' do nothing",
            [HISTORY_RUN_ID, start]).rowcount
        # (after an earlier trial the queue no longer holds the day's SQLs: the run's dbt stage re-queues them)
        waiting = cur.execute("select count(*) from marts.sql_handoff_queue where sql_at >= %s", [start]).fetchone()[0]
        conn.commit()
    return {"history_sqls_acknowledged": acked, "queue_rows_of_the_day_at_setup": waiting}


def timed_run(env: dict[str, str], day: str, parallel: int | None = None) -> float:
    """`handoff run --date DAY [--parallel N]` in a subprocess; its wall time. A failure raises with the output's
    tail."""
    t0 = time.perf_counter()
    res = subprocess.run([sys.executable, "-m", "handoff.cli", "run", "--date", day,
                          *(["--parallel", str(parallel)] if parallel else [])], env=env, cwd=REPO,
                         capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - t0
    if res.returncode != 0:
        raise RuntimeError(f"handoff run --date {day} exited {res.returncode}:\n"
                           + scrub((res.stdout[-2000:] + res.stderr[-4000:]), secrets_of(env)))
    return elapsed


def _ts(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text).replace(tzinfo=UTC) if text else None


def _span(tis: list[tuple], pick) -> float | None:
    """First start to last end of the picked task instances (seconds)."""
    chosen = [(s, e) for tid, s, e, *_ in tis if pick(tid) and s and e]
    if not chosen:
        return None
    return (max(e for _, e in chosen) - min(s for s, _ in chosen)).total_seconds()


def airflow_phases(airflow_db: Path) -> dict:
    """Wall time of each phase of the newest handoff_daily run, from Airflow's metadata DB (task_instance), and the
    tasks' return values (XCom)."""
    with sqlite3.connect(f"file:{airflow_db}?mode=ro", uri=True) as conn:
        (run_id,) = conn.execute("select run_id from dag_run where dag_id = ? order by id desc limit 1",
                                 [DAG_ID]).fetchone()
        tis = [(tid, _ts(s), _ts(e), state, tries) for tid, s, e, state, tries in conn.execute(
            "select task_id, start_date, end_date, state, try_number from task_instance where dag_id = ? and "
            "run_id = ?", [DAG_ID, run_id]).fetchall()]
        xcom = {tid: json.loads(v) for tid, v in conn.execute(
            "select task_id, value from xcom where dag_id = ? and run_id = ? and key = 'return_value'",
            [DAG_ID, run_id]).fetchall() if v is not None}
    # the dbt stage: the seeds-and-staging task, then the per-model task group
    dbt = lambda tid: tid == "dbt_staging" or tid.startswith("dbt_build.")  # noqa: E731
    return {
        "run_id": run_id,
        # (dag_run.start_date is the logical date under dag.test: the tasks' own span instead)
        "tasks_span_s": _span(tis, lambda t: True),
        "extract_load_s": _span(tis, lambda t: t.startswith("extract_load_")),
        "extract_load_crm_s": _span(tis, lambda t: t == "extract_load_crm"),
        "extract_load_analytics_s": _span(tis, lambda t: t == "extract_load_analytics"),
        "dbt_source_freshness_s": _span(tis, lambda t: t == "dbt_source_freshness"),
        "dbt_stage_s": _span(tis, dbt),
        "push_sqls_s": _span(tis, lambda t: t == "push_sqls"),
        "dbt_tasks": sum(1 for t in tis if dbt(t[0])),
        "tasks": len(tis),
        "tasks_not_success": sorted(t[0] for t in tis if t[3] != "success"),
        "retries": sum(max((t[4] or 1) - 1, 0) for t in tis),
        # each task's own duration, slowest first: where a stage's time goes (the span also holds the gaps
        # between tasks that dag.test schedules one at a time)
        "task_seconds": dict(sorted(((tid, round((e - s).total_seconds(), 2)) for tid, s, e, *_ in tis if s and e),
                                    key=lambda kv: -kv[1])),
        "xcom": xcom,
    }


def run_counts(admin: str, phases: dict) -> dict:
    """What the run moved: rows loaded (task return values) and SQLs pushed (ops.crm_push_log for its run_id)."""
    xcom = phases["xcom"]
    crm, events, push = (xcom.get(t, {}) for t in ("extract_load_crm", "extract_load_analytics", "push_sqls"))
    with psycopg.connect(admin) as conn:
        pushed = conn.execute("select count(distinct dedupe_key) from ops.crm_push_log where run_id = %s and "
                              "action = 'create_task' and status = 'succeeded'", [phases["run_id"]]).fetchone()[0]
    return {"analytics_files_loaded": events.get("files_loaded"), "analytics_rows_loaded": events.get("rows_loaded"),
            "analytics_rows_quarantined": events.get("rows_quarantined"),
            "analytics_files_skipped": events.get("files_skipped"), "crm_rows_loaded": crm.get("rows_loaded"),
            "crm_requests": crm.get("requests_sent"),
            "crm_rows_by_object": {k: v.get("rows_loaded") for k, v in crm.get("objects", {}).items()},
            "push_queued": push.get("queued"), "push_tasks_created": push.get("tasks_created"),
            "push_contacts_updated": push.get("contacts_updated"), "push_skipped": push.get("skipped"),
            "push_parked": push.get("parked"), "push_crm_requests": push.get("crm_requests"),
            "sqls_pushed_in_log": pushed}
