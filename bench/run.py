"""The full benchmark: every stage of the daily job on a generated sample, each in its own subprocess.

    .venv/bin/python bench/run.py --tier S|M [--runs N] [--out bench/results] [--keep-db]

from the checkout's root; the script finds the repository from its own path (REPO below), so any working
directory and any checkout location work. One file, though long: every stage runs as a subprocess of this same
script (``--stage NAME``), so the stages, the tier table and the report stay together; the daily-run stage's setup
is ``bench/e2e.py``, the scheduler's dbt-stage measurement ``bench/scheduler_dbt_stage.py``.

Tiers: S = 5,000 contacts x 180 days, M = 100,000 contacts x 180 days (same seed, end date 2026-11-24).
Stages (each figure is median/min/max over --runs, default 3 for S and 1 for M, and a ratio to its limit or peer):

    gen          handoff.sample.generate                events/s, vs the README's 100k-contact rate
    load         handoff.load.analytics (loader role)   rows/s, vs a plain COPY of the same rows (same table)
    copy         plain COPY of the loader's own rows    rows/s (the peer)
    dlt          dlt 1.31 postgres destination and the  rows/s: the loader's vs dlt's on the same files,
                 loader, both on the last DLT_DAYS days'     same run; dlt's vs the plain COPY
                 files (dlt: own dataset `dlt_bench`)
    dbt_full     `dbt build --full-refresh`             seconds
    dbt_incr     `dbt build` (as the DAG: no unit       seconds, vs the full build
                 tests), vars = the last day, its
                 events new to the models and its rows
                 gone from the daily tables (e2e.py)
    e2e_day      `handoff run --date <end date>`: the   seconds, vs the 5-minute target; and its dbt stage
                 daily DAG through Airflow for the last (first start to last end of the dbt tasks,
                 day, on the loaded history and marts   from Airflow's metadata DB) vs dbt_incr's one
                 (setup: bench/e2e.py)                  `dbt build` (target <= 1.5x)
    e2e_day_parallel the same with `--parallel 2`: the      the same figures
                 tasks through Airflow's LocalExecutor,
                 two at a time, as under a scheduler
    equal        once, after the last dbt_incr: every    equal or not, per mart; the refresh's seconds
                 marts table's rows and content hash,
                 then `dbt run --full-refresh`, then
                 again (the incremental-equals-full
                 check at the benchmark's scale)
    dag_parse    DagBag per-file duration               seconds, vs the issue's 1 s target
    push         tests/plugins/push/bench_push.py       seconds, vs the rate-limit floor

e2e_day's untimed setup makes the scratch database look like "history loaded, the last day new": the last day's
analytics rows removed and every earlier file in the ledger, CRM watermarks at the start of the last day (its record
versions removed from raw), every earlier SQL acknowledged in ops.crm_push_log; a fresh HANDOFF_HOME (Airflow
metadata DB migrated, CRM sandbox seeded from the sample). The run uses HANDOFF_WAREHOUSE_URL = the scratch database
and the cluster's current role passwords (HANDOFF_<ROLE>_PASSWORD), so no role password changes.

dbt_incr, e2e_day and e2e_day_parallel first wait, untimed, until no autovacuum worker has run in the scratch
database for one autovacuum_naptime (wait_for_autovacuum; the seconds waited are in the stage's result as
autovacuum_wait_s, and autovacuum_wait_cut_short says whether its 30-minute limit ended it): right after the full build
autovacuum vacuums the tables it wrote for many minutes, which a daily run a day later does not meet.

Peak RSS per stage is the stage subprocess's ru_maxrss from wait4 (it includes the subprocesses the stage waits
for, e.g. dbt and the CRM sandbox; it never includes the PostgreSQL server). Scratch database: handoff_bench
(dropped at the end unless --keep-db); the sample goes into a temporary folder unless --sample-dir is given.
Results: <out>/<tier>-<date>.json and a Markdown table on stdout.

The equal stage compares what the last stage left: after an e2e stage (`--only e2e_day,equal`) the daily DAG has
pushed the SQLs of sql_handoff_queue, so the refresh's queue lacks exactly those (the queue is what the CRM had not
acknowledged when the mart was built).

`--only e2e_day_parallel` (any stages from dbt_incr on) reruns stages on the database a `--keep-db` run kept, with
its sample (`--sample-dir`): nothing is generated or loaded first. Its results file is <tier>-<date>-only.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "plugins"))
sys.path.insert(0, str(REPO))

DB = "handoff_bench"
SEED = 42
END_DATE = date(2026, 11, 24)
TIERS = {
    # contacts, days, default runs, push: SQLs and rate (requests, seconds) — scaled so S stays short
    "S": {"contacts": 5_000, "days": 180, "runs": 3, "push_sqls": 2_000, "push_rate": "50/1"},
    "M": {"contacts": 100_000, "days": 180, "runs": 1, "push_sqls": 10_000, "push_rate": "100/10"},
    # smoke test only; 60 days is the shortest with deals and meetings in the sample, which e2e_day's
    # `dbt source freshness` needs (an empty raw.crm_deals is a stale source)
    "XS": {"contacts": 400, "days": 60, "runs": 1, "push_sqls": 200, "push_rate": "100/1"},
}
README_GEN_RATE = 10_368_397 / 65.8  # events/s, README "Measured here": 100,000 x 180 sample
DAG_PARSE_LIMIT_S = 1.0  # the target: the dag-processor parses the file in under a second
RAW_EVENT_TABLES = "raw.analytics_events, raw.quarantine, ops.file_ledger, ops.load_log"
COPY_CHUNK = 1 << 20  # the same 1 MiB writes as bench_loader's plain COPY
# The loader-vs-dlt comparison runs both on the last 18 days' files (a tenth of the history): dlt loads ~6,700
# rows/s, so the whole tier-M sample took it 26 minutes a run, and three runs did not fit beside the other stages.
DLT_DAYS = 18
# The history-growth runs (--history): the same daily volume on HISTORY_DAYS[0] and HISTORY_DAYS[1] days of history.
# The sample's contacts stay active, so a longer history with the same contacts per day has more events per day; the
# longer run's contacts are scaled so its last day (the day the one-day build stages) carries the same events:
# measured, 6,060 x 360 puts 6,662 events on 2026-11-24 against 6,800 for 5,000 x 180 (both seed 42). Each run
# reports the day's events, so the match is on the record.
HISTORY_DAYS = (180, 360)
HISTORY_CONTACTS_FACTOR = 6_060 / 5_000
HISTORY_TARGETS = {"rows_read": 1.1, "seconds": 1.2}  # the one-day build's growth when history doubles (at most)
E2E_TARGET_S = 300.0  # the daily run's 5-minute target
E2E_DBT_TARGET_RATIO = 1.5  # the DAG's dbt stage vs one `dbt build` of the same day (our own target, not the issue's)


# ---------------------------------------------------------------------------------------------- stage bodies
# Each runs in a fresh `python bench/run.py --stage NAME --params JSON` and prints one JSON line last.

def _target():
    from handoff import warehouse  # noqa: PLC0415

    return dataclasses.replace(warehouse.target(), dbname=DB)


def _interval(p: dict) -> tuple[datetime, datetime]:
    end = datetime.fromisoformat(p["end_date"]).replace(tzinfo=UTC) + timedelta(days=1)
    return end - timedelta(days=p["days"]), end


def _reset_events(admin: str) -> None:
    import psycopg  # noqa: PLC0415

    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"truncate {RAW_EVENT_TABLES}")
        conn.execute("checkpoint")


def stage_gen(p: dict) -> dict:
    from handoff import sample  # noqa: PLC0415

    out = Path(p["sample"])
    if out.exists():
        shutil.rmtree(out)
    t0 = time.perf_counter()
    manifest = sample.generate(out, seed=SEED, contacts=p["contacts"], days=p["days"],
                               end_date=date.fromisoformat(p["end_date"]))
    elapsed = time.perf_counter() - t0
    counts = json.loads((out / "manifest.json").read_text())["counts"]
    del manifest
    return {"seconds": elapsed, "events": counts["events"], "contacts": counts["contacts"],
            "bytes": sum(f.stat().st_size for f in out.rglob("*") if f.is_file())}


def stage_load(p: dict) -> dict:
    """The analytics loader over the whole sample (every day's files), then dump its rows for the plain COPY."""
    import psycopg  # noqa: PLC0415
    from handoff.load import analytics  # noqa: PLC0415

    tgt = _target()
    admin = tgt.conninfo("admin")
    _reset_events(admin)
    start, end = _interval(p)
    t0 = time.perf_counter()
    res = analytics.load_analytics_files(tgt.conninfo("loader"), Path(p["sample"]) / "analytics", start, end)
    elapsed = time.perf_counter() - t0
    # the rows exactly as the loader wrote them, for the plain COPY stage (not timed, streamed to disk); the
    # history-growth runs have no plain COPY stage, so no rows_file
    if p.get("rows_file"):
        with psycopg.connect(admin) as conn, conn.cursor() as cur, open(p["rows_file"], "wb") as fh:
            with cur.copy(f"COPY raw.analytics_events ({analytics.EVENT_COLUMNS}) TO STDOUT") as copy:
                for buf in copy:
                    fh.write(buf)
    return {"seconds": elapsed, "rows": res["rows_loaded"], "rows_read": res["rows_read"],
            "rows_quarantined": res["rows_quarantined"], "files": res["files_loaded"]}


def stage_copy(p: dict) -> dict:
    """A plain COPY of the loader's own rows into the same table (1 MiB writes, one transaction)."""
    import psycopg  # noqa: PLC0415
    from handoff.load import analytics  # noqa: PLC0415

    tgt = _target()
    admin = tgt.conninfo("admin")
    _reset_events(admin)
    rows_file = Path(p["rows_file"])
    with open(rows_file, "rb") as fh:
        rows = sum(chunk.count(b"\n") for chunk in iter(lambda: fh.read(COPY_CHUNK), b""))
    with psycopg.connect(admin) as conn, conn.cursor() as cur, open(rows_file, "rb") as fh:
        t0 = time.perf_counter()
        with cur.copy(f"COPY raw.analytics_events ({analytics.EVENT_COLUMNS}) FROM STDIN") as copy:
            for chunk in iter(lambda: fh.read(COPY_CHUNK), b""):
                copy.write(chunk)
        conn.commit()
        elapsed = time.perf_counter() - t0
    return {"seconds": elapsed, "rows": rows, "bytes": rows_file.stat().st_size}


def stage_dlt(p: dict) -> dict:
    """The peer: dlt's postgres destination (its default insert_values path) and handoff's loader, each loading the
    same gzipped JSONL files, the last DLT_DAYS days', into the same Postgres; the loader first (raw emptied), then
    dlt into its own dataset. The copy stage, next, puts every row back into raw."""
    import gzip  # noqa: PLC0415

    import orjson  # noqa: PLC0415
    import psycopg  # noqa: PLC0415
    from handoff.load import analytics  # noqa: PLC0415

    tgt = _target()
    admin = tgt.conninfo("admin")
    _, end = _interval(p)
    start = end - timedelta(days=DLT_DAYS)
    # a landing folder of those days alone (links): the loader also takes late files of earlier days
    landing = Path(p["work"]) / "dlt_days"
    shutil.rmtree(landing, ignore_errors=True)
    landing.mkdir()
    for i in range(DLT_DAYS):
        day = (start + timedelta(days=i)).date().isoformat()
        (landing / day).symlink_to(Path(p["sample"]).resolve() / "analytics" / day, target_is_directory=True)
    files = sorted(landing.glob("*/*.jsonl*"))

    _reset_events(admin)
    t0 = time.perf_counter()
    res = analytics.load_analytics_files(tgt.conninfo("loader"), landing, start, end)
    loader_s = time.perf_counter() - t0
    if res["files_loaded"] != len(files):
        raise RuntimeError(f"the loader took {res['files_loaded']} of the {len(files)} files dlt loads")

    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute("drop schema if exists dlt_bench cascade")
        conn.execute("checkpoint")
    os.environ["DESTINATION__POSTGRES__CREDENTIALS"] = tgt.url("admin")  # the scratch DB (tgt.dbname == DB)
    os.environ["RUNTIME__DLTHUB_TELEMETRY"] = "false"  # nothing leaves the machine
    os.environ["RUNTIME__LOG_LEVEL"] = "WARNING"
    import dlt  # noqa: PLC0415

    @dlt.resource(name="analytics_events", write_disposition="append", max_table_nesting=0)
    def events():
        for path in files:
            opener = gzip.open if path.suffix == ".gz" else open
            with opener(path, "rb") as fh:
                for line in fh:
                    if line.strip():
                        yield orjson.loads(line)

    with tempfile.TemporaryDirectory() as tmp:
        pipe = dlt.pipeline(pipeline_name="handoff_bench", destination="postgres", dataset_name="dlt_bench",
                            pipelines_dir=tmp)
        t0 = time.perf_counter()
        pipe.run(events())
        elapsed = time.perf_counter() - t0
    with psycopg.connect(admin, autocommit=True) as conn:
        rows = conn.execute("select count(*) from dlt_bench.analytics_events").fetchone()[0]
        conn.execute("drop schema dlt_bench cascade")
    # the loader's rows_read counts every line, as dlt's rows do (the sample has no bad lines to quarantine)
    return {"seconds": elapsed, "rows": rows, "files": len(files), "days": DLT_DAYS,
            "loader_seconds": loader_s, "loader_rows": res["rows_read"], "loader_rows_loaded": res["rows_loaded"],
            "loader_file_format": "insert_values"}


def _dbt(p: dict, *args: str, start: datetime | None, end: datetime) -> float:
    from handoff import dbt_runner  # noqa: PLC0415

    env = {"HANDOFF_DBT_DBNAME": DB, "DBT_TARGET_PATH": str(Path(p["work"]) / "dbt_target"),
           "DBT_LOG_PATH": str(Path(p["work"]) / "dbt_logs"), **dbt_runner.interval_env(start, end)}
    t0 = time.perf_counter()
    dbt_runner.run(list(args), quiet=True, env=env)
    return time.perf_counter() - t0


def _run_results(p: dict) -> list[dict]:
    return json.loads((Path(p["work"]) / "dbt_target" / "run_results.json").read_text())["results"]


def _slowest_nodes(p: dict, n: int = 12) -> dict[str, float]:
    """The build's n slowest nodes (dbt's run_results.json), seconds each: where a build's time went."""
    slowest = sorted(_run_results(p), key=lambda r: r["execution_time"], reverse=True)[:n]
    return {r["unique_id"].split(".", 2)[-1]: round(r["execution_time"], 1) for r in slowest}


def _node_seconds(p: dict) -> dict[str, dict[str, float]]:
    """The build's nodes by kind (model, test, seed, ...): how many, and their seconds added up (run_results.json;
    with dbt's threads the sum exceeds the wall time). How much of a build its data tests are."""
    kinds: dict[str, dict[str, float]] = {}
    for r in _run_results(p):
        kind = kinds.setdefault(r["unique_id"].split(".", 1)[0], {"nodes": 0, "seconds": 0.0})
        kind["nodes"] += 1
        kind["seconds"] += r["execution_time"]
    return {name: {**kind, "seconds": round(kind["seconds"], 2)} for name, kind in kinds.items()}


def stage_dbt_full(p: dict) -> dict:
    _, end = _interval(p)
    return {"seconds": _dbt(p, "build", "--full-refresh", start=None, end=end), "slowest_nodes": _slowest_nodes(p)}


def stage_dbt_incr(p: dict) -> dict:
    """One daily `dbt build` for the last day, its events new to the models (staged from raw by this build) on the
    history the full build made: e2e.make_day_new_to_dbt, untimed. Besides its seconds, what the build made the
    database do (db_work: rows and blocks from pg_stat_*, which machine noise does not move)."""
    import e2e  # noqa: PLC0415 - bench/e2e.py

    _, end = _interval(p)
    admin = _target().conninfo("admin")
    setup = e2e.make_day_new_to_dbt(admin, (end - timedelta(days=1)).date().isoformat())
    before = db_counters(admin)
    from handoff.dbt_dag import DBT_CMD_FLAGS  # noqa: PLC0415

    # as the daily DAG's dbt tasks call it: without the unit tests
    seconds = _dbt(p, "build", *DBT_CMD_FLAGS, start=end - timedelta(days=1), end=end)
    return {"seconds": seconds, "setup": setup, "db_work": db_work(before, db_counters(admin)),
            "slowest_nodes": _slowest_nodes(p), "node_seconds": _node_seconds(p)}


def mart_fingerprints(admin: str, schema: str = "marts") -> dict[str, list]:
    """Every table in ``schema`` as [rows, content hash]: the sum over its rows of the first 60 bits of the row's
    md5 (as text), which does not depend on row order and, unlike one md5 over all rows, fits any table (the
    scores mart is 18 million rows at tier M, too long for one text value)."""
    import psycopg  # noqa: PLC0415
    from psycopg import sql  # noqa: PLC0415

    with psycopg.connect(admin) as conn:
        tables = [r[0] for r in conn.execute("select table_name from information_schema.tables where table_schema"
                                             " = %s and table_type = 'BASE TABLE' order by 1", [schema]).fetchall()]
        return {table: list(conn.execute(sql.SQL(
            "select count(*), coalesce(sum(('x' || left(md5(t::text), 15))::bit(60)::bigint), 0)::text"
            " from {}.{} as t").format(sql.Identifier(schema), sql.Identifier(table))).fetchone())
            for table in tables}


def stage_equal(p: dict) -> dict:
    """The marts the one-day runs left against a full refresh over the same data (issue 26's correctness check):
    each mart's rows and content hash before and after `dbt run --full-refresh` (timed; untimed: the hashes)."""
    _, end = _interval(p)
    admin = _target().conninfo("admin")
    incremental = mart_fingerprints(admin)
    seconds = _dbt(p, "run", "--full-refresh", start=None, end=end)
    full = mart_fingerprints(admin)
    differing = sorted(m for m in incremental.keys() | full.keys() if incremental.get(m) != full.get(m))
    return {"seconds": seconds, "equal": not differing and bool(full), "marts": len(full),
            "rows": sum(rows for rows, _ in full.values()), "differing": differing,
            "incremental": incremental, "full_refresh": full}


# pg_stat_database's counters for the bench database: rows returned by sequential scans and index entries returned
# by index scans (tup_returned), heap rows fetched by index scans (tup_fetched), rows written, and 8 KiB blocks
# found in shared buffers or read from the OS. They count temporary tables too, which are gone by the time the
# per-table view could be read.
DB_COUNTERS = ("tup_returned", "tup_fetched", "tup_inserted", "tup_updated", "tup_deleted", "blks_hit", "blks_read",
               "temp_bytes")


DB_WORK_KEYS = ("rows_read", "rows_fetched_by_index", "index_scans", "rows_written", "blocks_touched",
                "blocks_read_from_os", "temp_mib")


def db_counters(admin: str) -> dict:
    """The bench database's cumulative counters: the database's (DB_COUNTERS) and each table's rows read (rows
    scanned + index entries returned, as the database's tup_returned counts them), rows written, sequential scans and
    index scans (each a descent of a btree: a probe) and 8 KiB blocks read from the OS (its heap, indexes and TOAST
    missed PostgreSQL's shared buffers: the OS's page cache or the disk), by table oid (a table a build replaces is
    a new oid, its counts start at 0), the catalogs' too.

    A backend's counts reach the shared statistics when its transaction ends and, at the latest, as it exits; the
    build's connections have closed when this runs, so the read repeats until two reads agree (each its own snapshot).
    """
    import psycopg  # noqa: PLC0415
    from psycopg import sql  # noqa: PLC0415

    def read() -> dict:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute("set stats_fetch_consistency = snapshot")
            columns = sql.SQL(", ").join(map(sql.Identifier, DB_COUNTERS))
            database = conn.execute(sql.SQL("select {} from pg_stat_database where datname = %s").format(columns),
                                    [DB]).fetchone()
            tables = conn.execute(
                "select relid, schemaname || '.' || relname, coalesce(seq_tup_read, 0) + coalesce(entries, 0),"
                " n_tup_ins + n_tup_upd + n_tup_del, coalesce(seq_scan, 0), coalesce(idx_scan, 0),"
                " coalesce(heap_blks_read, 0) + coalesce(idx_blks_read, 0) + coalesce(toast_blks_read, 0)"
                " + coalesce(tidx_blks_read, 0)"
                " from pg_stat_all_tables"
                " join pg_statio_all_tables using (relid, schemaname, relname)"
                " left join (select relid, sum(idx_tup_read)::bigint as entries from pg_stat_all_indexes"
                " group by relid) as indexes using (relid)"
                " where schemaname not like 'pg_temp%%'").fetchall()
        return {"database": dict(zip(DB_COUNTERS, database, strict=True)),
                "tables": {oid: {"name": name, "read": read, "written": written, "seq_scans": scans,
                                 "index_scans": probes, "blocks_read_from_os": blocks}
                           for oid, name, read, written, scans, probes, blocks in tables}}

    last = read()
    for _ in range(20):
        time.sleep(0.5)
        now = read()
        if now["database"] == last["database"]:
            return now
        last = now
    return last


def db_work(before: dict, after: dict) -> dict:
    """What happened between two db_counters reads: the database's deltas (rows_read = tup_returned, the figure the
    history-growth target is about), and every table that read or wrote rows, the most read first, with its
    sequential and index scans and the blocks it read from the OS. The tables' rows_read add up to the database's
    but for the temporary tables, which are gone with their transaction before the counters are read. index_scans
    (the tables' sum) counts the probes: rows read alone favours many probes over one range read of the same rows,
    which can cost more time."""
    delta = {k: after["database"][k] - before["database"][k] for k in DB_COUNTERS}
    tables = []
    for oid, now in after["tables"].items():
        was = before["tables"].get(oid, {"read": 0, "written": 0, "seq_scans": 0, "index_scans": 0,
                                         "blocks_read_from_os": 0})
        tables.append({"table": now["name"], "rows_read": now["read"] - was["read"],
                       "rows_written": now["written"] - was["written"],
                       "seq_scans": now["seq_scans"] - was["seq_scans"],
                       "index_scans": now["index_scans"] - was["index_scans"],
                       "blocks_read_from_os": now["blocks_read_from_os"] - was["blocks_read_from_os"]})
    tables = sorted((t for t in tables
                     if t["rows_read"] or t["rows_written"] or t["index_scans"] or t["blocks_read_from_os"]),
                    key=lambda t: t["rows_read"], reverse=True)
    return {"rows_read": delta["tup_returned"], "rows_fetched_by_index": delta["tup_fetched"],
            "index_scans": sum(t["index_scans"] for t in tables),
            "rows_written": delta["tup_inserted"] + delta["tup_updated"] + delta["tup_deleted"],
            "blocks_touched": delta["blks_hit"] + delta["blks_read"], "blocks_read_from_os": delta["blks_read"],
            "temp_mib": round(delta["temp_bytes"] / 2**20, 1), "tables_by_rows_read": tables}


def stage_dag_parse(p: dict) -> dict:
    from tests.dags.test_dag_integrity import DAGS, PARSE_SCRIPT  # noqa: PLC0415

    home = Path(p["work"]) / "airflow_home"
    home.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "AIRFLOW_HOME": str(home), "PYTHONPATH": str(REPO / "plugins"),
           "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS), "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins")}
    out = subprocess.run([sys.executable, "-c", PARSE_SCRIPT, str(DAGS)], env=env, capture_output=True, text=True,
                         check=True)
    parsed = json.loads(out.stdout.strip().splitlines()[-1])
    if parsed["errors"]:
        raise RuntimeError(f"DAG import errors: {parsed['errors']}")
    per_file = {Path(s["file"]).name: s["duration"] for s in parsed["stats"]}
    tasks = sum(len(d["tasks"]) for d in parsed["dags"].values())
    return {"seconds": max(per_file.values()), "per_file": per_file, "tasks": tasks, "wall": parsed["wall"]}


def stage_push(p: dict) -> dict:
    out = subprocess.run([sys.executable, str(REPO / "tests/plugins/push/bench_push.py"), "--sqls",
                          str(p["push_sqls"]), "--rate", p["push_rate"]],
                         capture_output=True, text=True, check=True, cwd=REPO)
    m_floor = re.search(r"floor ([\d.]+) s", out.stdout)
    m_run = re.search(r"client limiter:\s+([\d.]+) s = ([\d.]+)x floor; (\d+) HTTP requests .*?(\d+) answered 429",
                      out.stdout)
    if not (m_floor and m_run):
        raise RuntimeError(f"unexpected bench_push output:\n{out.stdout}\n{out.stderr}")
    return {"seconds": float(m_run.group(1)), "floor_s": float(m_floor.group(1)), "http_requests": int(m_run.group(3)),
            "429s": int(m_run.group(4)), "sqls": p["push_sqls"], "rate": p["push_rate"]}


def stage_e2e_day(p: dict) -> dict:
    """The daily DAG for the last day, end to end through Airflow (`handoff run`), on the history the earlier
    stages loaded and built. Setup untimed (bench/e2e.py); timed: the `handoff run` subprocess alone."""
    import e2e  # noqa: PLC0415 - bench/e2e.py (bench/ is on sys.path: this file runs as a script)

    tgt = _target()  # the local cluster's credentials, read before anything points HANDOFF_HOME elsewhere
    admin = tgt.conninfo("admin")
    _, end = _interval(p)
    start, day = end - timedelta(days=1), (end - timedelta(days=1)).date().isoformat()
    home = e2e.make_home(Path(p["work"]), Path(p["sample"]))
    env = e2e.run_env(tgt, home)
    e2e.prepare_home(env)
    setup = {**e2e.make_day_new_to_dbt(admin, day),
             **e2e.reset_analytics(admin, home / "sample" / "analytics", day), **e2e.reset_crm(admin, start, end),
             **e2e.acknowledge_history(admin, start)}
    seconds = e2e.timed_run(env, day, parallel=p.get("parallel"))
    phases = e2e.airflow_phases(home / "airflow" / "airflow.db")
    counts = e2e.run_counts(admin, phases)
    del phases["xcom"]
    return {"seconds": seconds, "day": day, **phases, **counts, "setup": setup}


def stage_e2e_day_parallel(p: dict) -> dict:
    """e2e_day with `handoff run --parallel 2`: up to two tasks at once, each in a LocalExecutor worker (2 cores)."""
    return {**stage_e2e_day({**p, "parallel": 2}), "parallel": 2}


RERUNNABLE = ("dbt_incr", "e2e_day", "e2e_day_parallel", "dag_parse", "push", "equal")
STAGES = {"gen": stage_gen, "load": stage_load, "copy": stage_copy, "dlt": stage_dlt, "dbt_full": stage_dbt_full,
          "dbt_incr": stage_dbt_incr, "e2e_day": stage_e2e_day, "e2e_day_parallel": stage_e2e_day_parallel,
          "dag_parse": stage_dag_parse, "push": stage_push, "equal": stage_equal}


# ---------------------------------------------------------------------------------------------- the driver

def run_stage(name: str, params: dict, log_dir: Path) -> dict:
    """One stage in a fresh subprocess; its result plus its peak RSS (wait4: itself and the children it waited)."""
    log = log_dir / f"{name}.log"
    with open(log, "ab") as err:
        proc = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--stage", name, "--params",
                                 json.dumps(params)], stdout=subprocess.PIPE, stderr=err, cwd=REPO)
        out = proc.stdout.read()
        proc.stdout.close()
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"stage {name} failed (exit {proc.returncode}); see {log}:\n"
                           + log.read_text(errors="replace")[-3000:])
    result = json.loads(out.decode().strip().splitlines()[-1])
    result["peak_rss_mib"] = usage.ru_maxrss / 1024
    return result


# stages timed on the database the earlier stages wrote: each waits (untimed) for autovacuum to finish first
AFTER_AUTOVACUUM = ("dbt_incr", "e2e_day", "e2e_day_parallel")


def wait_for_autovacuum(limit_s: float = 1800.0) -> tuple[float, bool]:
    """(seconds waited, untimed; whether the limit cut the wait short) until no autovacuum worker has run in the bench
    database for one autovacuum_naptime and 5 s (the launcher starts workers once per naptime, so a shorter quiet
    spell can fall between two of its rounds).

    Right after the full build, autovacuum vacuums the tables it wrote (tens of GB at tier M) for many minutes, and
    the stage timed next shared the disk with it: in one tier-M run the one-day build ran beside the vacuums of the
    scores tables. A daily run a day after a full build does not meet them.
    """
    import psycopg  # noqa: PLC0415

    t0 = time.perf_counter()
    with psycopg.connect(_target().conninfo("admin"), autocommit=True) as conn:
        naptime = float(conn.execute("select setting from pg_settings where name = 'autovacuum_naptime'"
                                     ).fetchone()[0])
        quiet_since = time.perf_counter()
        while time.perf_counter() - quiet_since < naptime + 5:
            if time.perf_counter() - t0 > limit_s:
                return time.perf_counter() - t0, True
            workers = conn.execute("select count(*) from pg_stat_activity "
                                   "where backend_type = 'autovacuum worker' and datname = %s", [DB]).fetchone()[0]
            if workers:
                quiet_since = time.perf_counter()
            time.sleep(5)
    return time.perf_counter() - t0, False


def timed_stage(name: str, params: dict, log_dir: Path) -> dict:
    """run_stage, after the autovacuum wait for the stages in AFTER_AUTOVACUUM (its seconds in the result)."""
    waited = wait_for_autovacuum() if name in AFTER_AUTOVACUUM else None
    result = run_stage(name, params, log_dir)
    if waited is not None:
        result["autovacuum_wait_s"], result["autovacuum_wait_cut_short"] = round(waited[0], 1), waited[1]
    return result


def warehouse_up():
    """The warehouse target, its local cluster started if it is the local one."""
    from handoff import warehouse  # noqa: PLC0415

    base = warehouse.target()
    if base.local:
        warehouse.LocalCluster().up(log=lambda *_: None)
    return base


def prepare_db(sample: Path) -> None:
    import psycopg  # noqa: PLC0415
    from handoff import warehouse  # noqa: PLC0415
    from psycopg import sql  # noqa: PLC0415

    base = warehouse_up()
    tgt = dataclasses.replace(base, dbname=DB)
    with psycopg.connect(base.conninfo("admin", dbname="postgres"), autocommit=True) as conn:
        conn.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(DB)))
        conn.execute(warehouse.create_database(DB))
    warehouse.setup(dataclasses.replace(tgt, local=False), log=lambda *_: None)


def fill_crm(sample: Path) -> dict:
    """The CRM objects into raw.crm_* (tests/dbt/rawfill.py, no analytics days): what dbt needs besides events."""
    sys.path.insert(0, str(REPO / "tests" / "dbt"))
    from rawfill import fill  # noqa: PLC0415

    return fill(_target().conninfo("admin"), sample, days=[])


def drop_db() -> None:
    import psycopg  # noqa: PLC0415
    from handoff import warehouse  # noqa: PLC0415
    from psycopg import sql  # noqa: PLC0415

    base = warehouse.target()
    with psycopg.connect(base.conninfo("admin", dbname="postgres"), autocommit=True) as conn:
        conn.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(DB)))


def machine_info() -> dict:
    import psycopg  # noqa: PLC0415
    from handoff.warehouse.local import memory_bytes  # noqa: PLC0415 - what the local warehouse sizes its cache from

    with psycopg.connect(_target().conninfo("admin", dbname="postgres")) as conn:
        pg = conn.execute("select version()").fetchone()[0]
    try:
        os_name = dict(line.split("=", 1) for line in Path("/etc/os-release").read_text().splitlines()
                       if "=" in line).get("PRETTY_NAME", "").strip('"')
    except OSError:
        os_name = platform.platform()
    return {"nproc": os.cpu_count(), "memory_gib": round(memory_bytes() / 2**30, 1),
            "python": platform.python_version(), "postgres": pg, "os": os_name, "load_avg_at_start": os.getloadavg()}


def summarize(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}


def build_report(tier: str, cfg: dict, runs: list[dict[str, dict]]) -> dict:
    def col(stage: str, key: str = "seconds") -> list[float]:
        return [r[stage][key] for r in runs if stage in r]

    def rate(stage: str, count_key: str) -> list[float]:
        return [r[stage][count_key] / r[stage]["seconds"] for r in runs if stage in r]

    def rss(stage: str) -> float:
        return max(col(stage, "peak_rss_mib"))

    def per_run_ratio(num: str, den: str, f) -> list[float]:
        return [f(r[num], r[den]) for r in runs if num in r and den in r]

    rows = {}
    have = lambda stage: all(stage in r for r in runs)  # noqa: E731
    if have("gen"):  # (not in an --only rerun)
        rows["gen"] = {"what": f"sample {cfg['contacts']:,} x {cfg['days']} ({runs[0]['gen']['events']:,} events)",
                       "unit": "events/s", **summarize(rate("gen", "events")),
                       "seconds": summarize(col("gen")), "peak_rss_mib": rss("gen"),
                       "ratio": summarize([x / README_GEN_RATE for x in rate("gen", "events")]),
                       "ratio_to": "README rate at 100k x 180 (157,574 events/s)"}
        ev_rate = lambda a, b: (a["rows"] / a["seconds"]) / (b["rows"] / b["seconds"])  # noqa: E731
        loaded = runs[0]["load"]
        rows["load"] = {"what": f"analytics loader ({loaded['rows']:,} rows, {loaded['files']} files)",
                        "unit": "rows/s", **summarize(rate("load", "rows")), "seconds": summarize(col("load")),
                        "peak_rss_mib": rss("load"), "ratio": summarize(per_run_ratio("load", "copy", ev_rate))
                        if have("copy") else None, "ratio_to": "plain COPY of the same rows (same run)"}
        if have("copy"):  # (not with --skip copy)
            rows["copy"] = {"what": "plain COPY, same rows, same table", "unit": "rows/s",
                            **summarize(rate("copy", "rows")), "seconds": summarize(col("copy")),
                            "peak_rss_mib": rss("copy"), "ratio": None, "ratio_to": "(the peer)"}
        if have("dlt"):
            d = runs[0]["dlt"]
            loader = [r["dlt"]["loader_rows"] / r["dlt"]["loader_seconds"] for r in runs]  # on dlt's files
            rows["dlt"] = {"what": f"dlt 1.31 postgres (insert_values), the last {d['days']} days' files "
                                   f"({d['rows']:,} rows, {d['files']} files)", "unit": "rows/s",
                         **summarize(rate("dlt", "rows")), "seconds": summarize(col("dlt")), "peak_rss_mib": rss("dlt"),
                         "ratio": summarize(per_run_ratio("dlt", "copy", ev_rate)), "ratio_to": "plain COPY (same run)",
                         "loader_on_the_same_files": summarize(loader),
                         "loader_vs_dlt": summarize([a / b for a, b in zip(loader, rate("dlt", "rows"), strict=True)])}
    if have("dbt_full"):
        rows["dbt_full"] = {"what": "dbt build --full-refresh", "unit": "s", **summarize(col("dbt_full")),
                            "peak_rss_mib": rss("dbt_full"), "ratio": None, "ratio_to": "(the peer)"}
    if have("dbt_incr"):
        rows["dbt_incr"] = {"what": "dbt build, last day (incremental)", "unit": "s", **summarize(col("dbt_incr")),
                            "peak_rss_mib": rss("dbt_incr"),
                            "ratio": summarize(per_run_ratio("dbt_incr", "dbt_full",
                                                             lambda a, b: a["seconds"] / b["seconds"]))
                            if have("dbt_full") else None,
                            "ratio_to": "full dbt build (same run)",
                            "db_work": {k: summarize([r["dbt_incr"]["db_work"][k] for r in runs])
                                        for k in DB_WORK_KEYS if all("db_work" in r["dbt_incr"] for r in runs)}}
    for stage in ("e2e_day", "e2e_day_parallel"):
        if have(stage):
            rows.update(e2e_rows(stage, runs, col, rss, per_run_ratio))
    if have("dag_parse"):
        rows["dag_parse"] = {"what": f"DAG parse, DagBag per-file ({runs[0]['dag_parse']['tasks']} tasks)", "unit": "s",
                           **summarize(col("dag_parse")), "peak_rss_mib": rss("dag_parse"),
                           "ratio": summarize([x / DAG_PARSE_LIMIT_S for x in col("dag_parse")]),
                           "ratio_to": f"{DAG_PARSE_LIMIT_S:g} s target"}
    if have("push"):
        per = cfg["push_rate"].replace("/", " req / ")
        rows["push"] = {"what": f"push {cfg['push_sqls']:,} SQLs at {per} s", "unit": "s",
                      **summarize(col("push")), "peak_rss_mib": rss("push"),
                      "ratio": summarize([r["push"]["seconds"] / r["push"]["floor_s"] for r in runs]),
                      "ratio_to": f"rate-limit floor ({runs[0]['push']['floor_s']:.2f} s)"}
    return rows


def e2e_rows(stage: str, runs: list[dict[str, dict]], col, rss, per_run_ratio) -> dict:
    """An e2e stage's two rows: the whole run vs the 5-minute target, its dbt stage vs dbt_incr's single build."""
    first = runs[0][stage]
    how = f" --parallel {first['parallel']}" if first.get("parallel") else ""
    phase_keys = ("extract_load_s", "extract_load_crm_s", "extract_load_analytics_s", "dbt_source_freshness_s",
                  "dbt_stage_s", "push_sqls_s", "tasks_span_s")
    phases = {k: summarize(col(stage, k)) for k in phase_keys if all(r[stage].get(k) is not None for r in runs)}
    moved = {k: first[k] for k in ("analytics_rows_loaded", "analytics_files_loaded", "crm_rows_loaded",
                                   "push_queued", "push_tasks_created", "sqls_pushed_in_log", "retries")}
    return {
        stage: {"what": f"handoff run --date {first['day']}{how} (daily DAG, {first['tasks']} tasks, loaded history)",
                "unit": "s", **summarize(col(stage)), "peak_rss_mib": rss(stage),
                "ratio": summarize([x / E2E_TARGET_S for x in col(stage)]),
                "ratio_to": f"{E2E_TARGET_S:g} s target", "phases": phases, "moved": moved},
        f"{stage}_dbt": {"what": f"{stage}'s dbt stage ({first['dbt_tasks']} dbt tasks, first start to last end)",
                         "unit": "s", **summarize(col(stage, "dbt_stage_s")), "peak_rss_mib": rss(stage),
                         "ratio": (summarize(per_run_ratio(stage, "dbt_incr",
                                                           lambda a, b: a["dbt_stage_s"] / b["seconds"]))
                                   if all("dbt_incr" in r for r in runs) else None),
                         "ratio_to": f"dbt_incr's one dbt build, same run (target <= {E2E_DBT_TARGET_RATIO:g})"},
    }


def markdown(tier: str, rows: dict, info: dict, n_runs: int) -> str:
    def num(x: float, unit: str) -> str:
        return f"{x:,.0f}" if unit.endswith("/s") else f"{x:.2f}"

    out = [f"### tier {tier}: {n_runs} run(s) — {info['nproc']} cores, {info['memory_gib']} GiB, Python "
           f"{info['python']}, {info['postgres'].split(' on ')[0]}", "",
           "| stage | unit | median | min | max | ratio (median, min–max) | to | peak RSS MiB |",
           "| --- | --- | ---: | ---: | ---: | ---: | --- | ---: |"]
    for r in rows.values():
        ratio = (f"{r['ratio']['median']:.2f} ({r['ratio']['min']:.2f}–{r['ratio']['max']:.2f})"
                 if r["ratio"] else "—")
        out.append(f"| {r['what']} | {r['unit']} | {num(r['median'], r['unit'])} | {num(r['min'], r['unit'])} | "
                   f"{num(r['max'], r['unit'])} | {ratio} | {r['ratio_to']} | {r['peak_rss_mib']:.0f} |")
    if "dlt" in rows:
        lvd = rows["dlt"]["loader_vs_dlt"]
        out += ["", f"loader vs dlt on the same files: {lvd['median']:.2f}x dlt's rows/s (min {lvd['min']:.2f}, "
                    f"max {lvd['max']:.2f})."]
    for stage in ("e2e_day", "e2e_day_parallel"):
        if stage not in rows:
            continue
        ph, mv = rows[stage]["phases"], rows[stage]["moved"]
        n = lambda x: f"{x:,}" if isinstance(x, int) else "?"  # noqa: E731 - a task's XCom may be missing
        names = {"extract_load_s": "extract/load", "dbt_source_freshness_s": "dbt source freshness",
                 "dbt_stage_s": "dbt stage", "push_sqls_s": "push_sqls",
                 "tasks_span_s": "first task start to last task end"}
        parts = ", ".join(f"{label} {ph[k]['median']:.1f} s" for k, label in names.items() if k in ph)
        out += ["", f"{stage} phases (median): {parts}. The run loaded {n(mv['analytics_rows_loaded'])} event rows "
                f"({n(mv['analytics_files_loaded'])} files) and {n(mv['crm_rows_loaded'])} CRM rows, pushed "
                f"{n(mv['push_tasks_created'])} of {n(mv['push_queued'])} queued SQLs (push log: "
                f"{n(mv['sqls_pushed_in_log'])}); retries {mv['retries']}."]
    out += ["", "Peak RSS: the stage's process tree (not the PostgreSQL server)."]
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tier", choices=sorted(TIERS))
    ap.add_argument("--runs", type=int, help="runs per stage (default: 3 for S, 1 for M)")
    ap.add_argument("--out", default=str(REPO / "bench" / "results"))
    ap.add_argument("--sample-dir", help="generate the sample here (kept) instead of a temporary folder")
    ap.add_argument("--keep-db", action="store_true", help=f"keep the scratch database {DB} afterwards")
    ap.add_argument("--skip", default="",
                    help="comma-separated stages to leave out: dlt, push, dag_parse, e2e_day, e2e_day_parallel, "
                         "equal")
    ap.add_argument("--only", default="",
                    help="comma-separated stages (dbt_incr and later) to rerun on the database a --keep-db run kept")
    ap.add_argument("--history", action="store_true",
                    help=f"the history-growth stage only: the tier's daily volume on {HISTORY_DAYS[0]} and "
                         f"{HISTORY_DAYS[1]} days of history, the one-day build on each")
    ap.add_argument("--stage", help=argparse.SUPPRESS)
    ap.add_argument("--params", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.stage:  # inside a stage subprocess
        print(json.dumps(STAGES[args.stage](json.loads(args.params))), flush=True)
        return
    if not args.tier:
        ap.error("--tier is required")
    cfg = TIERS[args.tier]
    n_runs = args.runs or cfg["runs"]
    if args.history:
        return history_growth(args, cfg, n_runs)
    skip = {s for s in args.skip.split(",") if s}
    only = [s for s in args.only.split(",") if s]
    if only and (set(only) - set(RERUNNABLE) or not args.sample_dir):
        ap.error(f"--only takes stages of {', '.join(RERUNNABLE)}, and needs the kept run's --sample-dir")
    started = datetime.now(UTC)
    t_all = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix=f"handoff_bench_{args.tier}_"))
    sample = Path(args.sample_dir) if args.sample_dir else work / "sample"
    params = {"sample": str(sample), "contacts": cfg["contacts"], "days": cfg["days"],
              "end_date": END_DATE.isoformat(), "rows_file": str(work / "rows.copy"), "work": str(work),
              "push_sqls": cfg["push_sqls"], "push_rate": cfg["push_rate"]}
    say = lambda msg: print(f"[{time.perf_counter() - t_all:7.1f}s] {msg}", file=sys.stderr, flush=True)  # noqa: E731
    runs: list[dict[str, dict]] = [{} for _ in range(n_runs)]
    equal = None
    try:
        warehouse_up()  # machine_info asks the server its version
        info = machine_info()
        if only:
            for i in range(n_runs):
                for stage in only:
                    if stage != "equal":
                        say(f"run {i + 1}/{n_runs}: {stage} (on the kept {DB})")
                        runs[i][stage] = timed_stage(stage, params, work)
            if "equal" in only:
                say(f"equal: the marts against a full refresh (on the kept {DB})")
                equal = run_stage("equal", params, work)
            return finish(args, started=started, t_all=t_all, cfg=cfg, info=info, crm_counts={}, runs=runs,
                          n_runs=n_runs, equal=equal, suffix="-only")
        prepare_db(sample)
        for i in range(n_runs):
            say(f"run {i + 1}/{n_runs}: gen")
            runs[i]["gen"] = run_stage("gen", params, work)
        say("raw.crm_* from the sample (rawfill, not timed)")
        crm_counts = fill_crm(sample)
        # dlt before copy: it empties raw for the loader's run on its days; copy puts every row back
        order = [s for s in ("load", "dlt", "copy") if s not in skip]
        for i in range(n_runs):
            for stage in order:
                say(f"run {i + 1}/{n_runs}: {stage}")
                runs[i][stage] = run_stage(stage, params, work)
        Path(params["rows_file"]).unlink(missing_ok=True)  # 13 GB at tier M; the dbt stages need the disk
        # raw.analytics_events now holds the loader's rows (the plain COPY put the same rows back)
        for i in range(n_runs):
            for stage in ("dbt_full", "dbt_incr"):
                say(f"run {i + 1}/{n_runs}: {stage}")
                runs[i][stage] = timed_stage(stage, params, work)
        if "equal" not in skip:  # once, on the marts the last one-day build left
            say("equal: the marts against a full refresh")
            equal = run_stage("equal", params, work)
        # the marts are built on the whole history: the daily DAG for the last day, on top of it
        for stage in ("e2e_day", "e2e_day_parallel", "dag_parse", "push"):
            if stage in skip:
                continue
            for i in range(n_runs):
                say(f"run {i + 1}/{n_runs}: {stage}")
                runs[i][stage] = timed_stage(stage, params, work)
    finally:
        if not args.keep_db and not only:
            try:
                drop_db()
            except Exception as exc:  # noqa: BLE001 - reporting matters more than the cleanup
                print(f"could not drop {DB}: {exc}", file=sys.stderr)
        shutil.rmtree(work, ignore_errors=True)
    finish(args, started=started, t_all=t_all, cfg=cfg, info=info, crm_counts=crm_counts, runs=runs, n_runs=n_runs,
           equal=equal)


def history_growth(args, cfg: dict, n_runs: int) -> None:
    """--history: for each length in HISTORY_DAYS, a scratch database with that history (sample, load, CRM, full
    build; untimed but for the full build), then the one-day build n_runs times (dbt_incr: seconds and what the
    database did). Writes <out>/<tier>-<date>-history.json: per length and the ratio longer / shorter."""
    started = datetime.now(UTC)
    t_all = time.perf_counter()
    say = lambda msg: print(f"[{time.perf_counter() - t_all:7.1f}s] {msg}", file=sys.stderr, flush=True)  # noqa: E731
    warehouse_up()
    info = machine_info()
    lengths = {}
    for days in HISTORY_DAYS:
        contacts = round(cfg["contacts"] * (1 if days == HISTORY_DAYS[0] else HISTORY_CONTACTS_FACTOR))
        work = Path(tempfile.mkdtemp(prefix=f"handoff_bench_{args.tier}_history{days}_"))
        params = {"sample": str(work / "sample"), "contacts": contacts, "days": days,
                  "end_date": END_DATE.isoformat(), "rows_file": None, "work": str(work)}
        try:
            prepare_db(work / "sample")
            say(f"{days} days: sample {contacts:,} contacts")
            gen = run_stage("gen", params, work)
            fill_crm(work / "sample")
            say(f"{days} days: load")
            load = run_stage("load", params, work)
            say(f"{days} days: dbt_full")
            full = timed_stage("dbt_full", params, work)
            incr = []
            for i in range(n_runs):
                say(f"{days} days: dbt_incr {i + 1}/{n_runs}")
                incr.append(timed_stage("dbt_incr", params, work))
            day_events = json.loads((work / "sample" / "manifest.json").read_text())["events_per_day"]
            day_events = list(day_events.values())[-1] if isinstance(day_events, dict) else day_events[-1]
            lengths[days] = {
                "contacts": contacts, "events": gen["events"], "day_events": day_events, "load_rows": load["rows"],
                "dbt_full_s": full["seconds"], "dbt_incr_s": summarize([r["seconds"] for r in incr]),
                "db_work": {k: summarize([r["db_work"][k] for r in incr]) for k in DB_WORK_KEYS},
                "raw_runs": incr}
        finally:
            drop_db()
            shutil.rmtree(work, ignore_errors=True)
    short, long_ = (lengths[d] for d in HISTORY_DAYS)
    growth = {"seconds": long_["dbt_incr_s"]["median"] / short["dbt_incr_s"]["median"],
              **{k: long_["db_work"][k]["median"] / max(short["db_work"][k]["median"], 1) for k in DB_WORK_KEYS}}
    met = {k: growth[k] <= limit for k, limit in HISTORY_TARGETS.items()}
    result = {"tier": args.tier, "mode": "history", "started_at": started.isoformat(),
              "total_seconds": time.perf_counter() - t_all, "runs": n_runs, "commit": _commit(),
              "config": {"history_days": HISTORY_DAYS, "contacts_factor": HISTORY_CONTACTS_FACTOR, "seed": SEED,
                         "end_date": END_DATE.isoformat(), "targets": HISTORY_TARGETS},
              "machine": info, "lengths": lengths, "growth": growth, "targets_met": met,
              "growth_by_table": growth_by_table(short["raw_runs"], long_["raw_runs"])}
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{args.tier}-{started.date().isoformat()}-history.json"
    path.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(f"### tier {args.tier} daily volume, history {HISTORY_DAYS[0]} vs {HISTORY_DAYS[1]} days: the one-day "
          f"build, {n_runs} run(s) each (median)\n")
    print("| history | contacts | events | the day's events | full build s | one-day s | rows read | rows written "
          "| blocks touched |\n| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for days, r in lengths.items():
        w = r["db_work"]
        print(f"| {days} days | {r['contacts']:,} | {r['events']:,} | {r['day_events']:,} | {r['dbt_full_s']:.1f} | "
              f"{r['dbt_incr_s']['median']:.1f} | {w['rows_read']['median']:,.0f} | "
              f"{w['rows_written']['median']:,.0f} | {w['blocks_touched']['median']:,.0f} |")
    print(f"| growth | | | | | {growth['seconds']:.2f}x (target <= {HISTORY_TARGETS['seconds']}) | "
          f"{growth['rows_read']:.2f}x (target <= {HISTORY_TARGETS['rows_read']}) | {growth['rows_written']:.2f}x | "
          f"{growth['blocks_touched']:.2f}x |")
    print(f"\ntotal {time.perf_counter() - t_all:.0f} s; results: {path}")


def growth_by_table(short_runs: list[dict], long_runs: list[dict]) -> list[dict]:
    """Where the rows read grow: each table's median rows read per one-day build on the shorter and the longer
    history, the most added rows first (a table a build replaces counts the reads of its new copy only)."""
    def medians(runs: list[dict]) -> dict[str, float]:
        per_table = defaultdict(list)
        for run in runs:
            for t in run["db_work"]["tables_by_rows_read"]:
                per_table[t["table"]].append(t["rows_read"])
        return {name: statistics.median(reads + [0] * (len(runs) - len(reads))) for name, reads in per_table.items()}

    short, long_ = medians(short_runs), medians(long_runs)
    rows = [{"table": name, "short": short.get(name, 0), "long": long_.get(name, 0),
             "growth": round(long_.get(name, 0) / short[name], 2) if short.get(name) else None}
            for name in short.keys() | long_.keys()]
    return sorted(rows, key=lambda r: (r["short"] - r["long"], r["table"]))


def _commit() -> str | None:
    """The commit the bench ran (with "+dirty" when the work tree had changes), or None outside a git checkout."""
    try:
        head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return head + ("+dirty" if dirty else "")


def finish(args, *, started, t_all, cfg, info, crm_counts, runs, n_runs, equal=None, suffix="") -> None:
    """Write <out>/<tier>-<date><suffix>.json and print the Markdown table (and the equal stage's verdict)."""
    rows = build_report(args.tier, cfg, runs)
    total = time.perf_counter() - t_all
    result = {"tier": args.tier, "started_at": started.isoformat(), "total_seconds": total, "runs": n_runs,
              "commit": _commit(), "stages_only": args.only or None,
              "config": {**cfg, "runs": n_runs, "seed": SEED, "end_date": END_DATE.isoformat()}, "machine": info,
              "crm_rows_filled": crm_counts, "summary": rows, "raw_runs": runs, "equal": equal}
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{args.tier}-{started.date().isoformat()}{suffix}.json"
    path.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(markdown(args.tier, rows, info, n_runs))
    if equal:
        verdict = "equal" if equal["equal"] else f"DIFFERENT in {', '.join(equal['differing'])}"
        print(f"\nThe marts the one-day runs left against a full refresh ({equal['seconds']:.0f} s), rows and content"
              f" hash: {verdict} ({equal['marts']} marts, {equal['rows']:,} rows).")
    print(f"\ntotal {total:.0f} s; results: {path}")


if __name__ == "__main__":
    main()
