"""The full benchmark: every stage of the daily job on a generated sample, each in its own subprocess.

    cd /work/main && .venv/bin/python bench/run.py --tier S|M [--runs N] [--out bench/results] [--keep-db]

Tiers: S = 5,000 contacts x 180 days, M = 100,000 contacts x 180 days (same seed, end date 2026-11-24).
Stages (each figure is median/min/max over --runs, default 3 for S and 1 for M, and a ratio to its limit or peer):

    gen          handoff.sample.generate                events/s, vs the README's 100k-contact rate
    load         handoff.load.analytics (loader role)   rows/s, vs a plain COPY of the same rows (same table)
    copy         plain COPY of the loader's own rows    rows/s (the peer)
    dlt          dlt 1.31 postgres destination, same    rows/s, vs the plain COPY
                 JSONL files, own dataset `dlt_bench`
    dbt_full     `dbt build --full-refresh`             seconds
    dbt_incr     `dbt build`, vars = the last day       seconds, vs the full build
    dag_parse    DagBag per-file duration               seconds, vs the 1 s limit of tests/dags
    push         tests/plugins/push/bench_push.py       seconds, vs the rate-limit floor

Peak RSS per stage is the stage subprocess's ru_maxrss from wait4 (it includes the subprocesses the stage waits
for, e.g. dbt and the CRM sandbox; it never includes the PostgreSQL server). Scratch database: handoff_bench
(dropped at the end unless --keep-db); the sample goes into a temporary folder unless --sample-dir is given.
Results: <out>/<tier>-<date>.json and a Markdown table on stdout.
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
    "XS": {"contacts": 300, "days": 14, "runs": 1, "push_sqls": 200, "push_rate": "100/1"},  # smoke test only
}
README_GEN_RATE = 10_368_397 / 65.8  # events/s, README "Measured here": 100,000 x 180 sample
DAG_PARSE_LIMIT_S = 1.0  # tests/dags/test_dag_integrity.py
RAW_EVENT_TABLES = "raw.analytics_events, raw.quarantine, ops.file_ledger, ops.load_log"
COPY_CHUNK = 1 << 20  # the same 1 MiB writes as bench_loader's plain COPY


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
    # the rows exactly as the loader wrote them, for the plain COPY stage (not timed, streamed to disk)
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
    """dlt's postgres destination loading the same gzipped JSONL files (its default insert_values path)."""
    import gzip  # noqa: PLC0415

    import orjson  # noqa: PLC0415
    import psycopg  # noqa: PLC0415

    tgt = _target()
    with psycopg.connect(tgt.conninfo("admin"), autocommit=True) as conn:
        conn.execute("drop schema if exists dlt_bench cascade")
        conn.execute("checkpoint")
    os.environ["DESTINATION__POSTGRES__CREDENTIALS"] = tgt.url("admin")  # the scratch DB (tgt.dbname == DB)
    os.environ["RUNTIME__DLTHUB_TELEMETRY"] = "false"  # nothing leaves the machine
    os.environ["RUNTIME__LOG_LEVEL"] = "WARNING"
    import dlt  # noqa: PLC0415

    files = sorted((Path(p["sample"]) / "analytics").glob("*/*.jsonl*"))

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
    with psycopg.connect(tgt.conninfo("admin")) as conn:
        rows = conn.execute("select count(*) from dlt_bench.analytics_events").fetchone()[0]
    return {"seconds": elapsed, "rows": rows, "files": len(files), "loader_file_format": "insert_values"}


def _dbt(p: dict, *args: str) -> float:
    from handoff import dbt_runner  # noqa: PLC0415

    env = {"HANDOFF_DBT_DBNAME": DB, "DBT_TARGET_PATH": str(Path(p["work"]) / "dbt_target"),
           "DBT_LOG_PATH": str(Path(p["work"]) / "dbt_logs")}
    t0 = time.perf_counter()
    dbt_runner.run(list(args), quiet=True, env=env)
    return time.perf_counter() - t0


def _dbt_vars(start: datetime | None, end: datetime) -> str:
    return json.dumps({"data_interval_start": start.isoformat() if start else None,
                       "data_interval_end": end.isoformat()})


def stage_dbt_full(p: dict) -> dict:
    _, end = _interval(p)
    return {"seconds": _dbt(p, "build", "--full-refresh", "--vars", _dbt_vars(None, end))}


def stage_dbt_incr(p: dict) -> dict:
    _, end = _interval(p)
    return {"seconds": _dbt(p, "build", "--vars", _dbt_vars(end - timedelta(days=1), end))}


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


STAGES = {"gen": stage_gen, "load": stage_load, "copy": stage_copy, "dlt": stage_dlt, "dbt_full": stage_dbt_full,
          "dbt_incr": stage_dbt_incr, "dag_parse": stage_dag_parse, "push": stage_push}


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


def prepare_db(sample: Path) -> None:
    import psycopg  # noqa: PLC0415
    from handoff import warehouse  # noqa: PLC0415
    from psycopg import sql  # noqa: PLC0415

    base = warehouse.target()
    if base.local:
        warehouse.LocalCluster().up(log=lambda *_: None)
    tgt = dataclasses.replace(base, dbname=DB)
    with psycopg.connect(base.conninfo("admin", dbname="postgres"), autocommit=True) as conn:
        conn.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(DB)))
        conn.execute(sql.SQL("create database {}").format(sql.Identifier(DB)))
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

    mem_kib = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
                   if line.startswith("MemTotal:"))
    with psycopg.connect(_target().conninfo("admin", dbname="postgres")) as conn:
        pg = conn.execute("select version()").fetchone()[0]
    try:
        os_name = dict(line.split("=", 1) for line in Path("/etc/os-release").read_text().splitlines()
                       if "=" in line).get("PRETTY_NAME", "").strip('"')
    except OSError:
        os_name = platform.platform()
    return {"nproc": os.cpu_count(), "memory_gib": round(mem_kib / 1024 / 1024, 1), "python": platform.python_version(),
            "postgres": pg, "os": os_name, "load_avg_at_start": os.getloadavg()}


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
    rows["gen"] = {"what": f"sample {cfg['contacts']:,} x {cfg['days']} ({runs[0]['gen']['events']:,} events)",
                   "unit": "events/s", **summarize(rate("gen", "events")),
                   "seconds": summarize(col("gen")), "peak_rss_mib": rss("gen"),
                   "ratio": summarize([x / README_GEN_RATE for x in rate("gen", "events")]),
                   "ratio_to": "README rate at 100k x 180 (157,574 events/s)"}
    ev_rate = lambda a, b: (a["rows"] / a["seconds"]) / (b["rows"] / b["seconds"])  # noqa: E731
    rows["load"] = {"what": f"analytics loader ({runs[0]['load']['rows']:,} rows, {runs[0]['load']['files']} files)",
                    "unit": "rows/s", **summarize(rate("load", "rows")), "seconds": summarize(col("load")),
                    "peak_rss_mib": rss("load"), "ratio": summarize(per_run_ratio("load", "copy", ev_rate)),
                    "ratio_to": "plain COPY of the same rows (same run)"}
    rows["copy"] = {"what": "plain COPY, same rows, same table", "unit": "rows/s", **summarize(rate("copy", "rows")),
                    "seconds": summarize(col("copy")), "peak_rss_mib": rss("copy"), "ratio": None,
                    "ratio_to": "(the peer)"}
    if have("dlt"):
        rows["dlt"] = {"what": "dlt 1.31 postgres (insert_values), same JSONL files", "unit": "rows/s",
                     **summarize(rate("dlt", "rows")), "seconds": summarize(col("dlt")), "peak_rss_mib": rss("dlt"),
                     "ratio": summarize(per_run_ratio("dlt", "copy", ev_rate)), "ratio_to": "plain COPY (same run)",
                     "loader_vs_dlt": summarize(per_run_ratio("load", "dlt", ev_rate))}
    rows["dbt_full"] = {"what": "dbt build --full-refresh", "unit": "s", **summarize(col("dbt_full")),
                        "peak_rss_mib": rss("dbt_full"), "ratio": None, "ratio_to": "(the peer)"}
    rows["dbt_incr"] = {"what": "dbt build, last day (incremental)", "unit": "s", **summarize(col("dbt_incr")),
                        "peak_rss_mib": rss("dbt_incr"),
                        "ratio": summarize(per_run_ratio("dbt_incr", "dbt_full",
                                                         lambda a, b: a["seconds"] / b["seconds"])),
                        "ratio_to": "full dbt build (same run)"}
    if have("dag_parse"):
        rows["dag_parse"] = {"what": f"DAG parse, DagBag per-file ({runs[0]['dag_parse']['tasks']} tasks)", "unit": "s",
                           **summarize(col("dag_parse")), "peak_rss_mib": rss("dag_parse"),
                           "ratio": summarize([x / DAG_PARSE_LIMIT_S for x in col("dag_parse")]),
                           "ratio_to": f"{DAG_PARSE_LIMIT_S:g} s limit (tests/dags)"}
    if have("push"):
        per = cfg["push_rate"].replace("/", " req / ")
        rows["push"] = {"what": f"push {cfg['push_sqls']:,} SQLs at {per} s", "unit": "s",
                      **summarize(col("push")), "peak_rss_mib": rss("push"),
                      "ratio": summarize([r["push"]["seconds"] / r["push"]["floor_s"] for r in runs]),
                      "ratio_to": f"rate-limit floor ({runs[0]['push']['floor_s']:.2f} s)"}
    return rows


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
        out += ["", f"loader vs dlt: {lvd['median']:.2f}x dlt's rows/s (min {lvd['min']:.2f}, max {lvd['max']:.2f})."]
    out += ["", "Peak RSS: the stage's process tree (not the PostgreSQL server)."]
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tier", choices=sorted(TIERS))
    ap.add_argument("--runs", type=int, help="runs per stage (default: 3 for S, 1 for M)")
    ap.add_argument("--out", default=str(REPO / "bench" / "results"))
    ap.add_argument("--sample-dir", help="generate the sample here (kept) instead of a temporary folder")
    ap.add_argument("--keep-db", action="store_true", help=f"keep the scratch database {DB} afterwards")
    ap.add_argument("--skip", default="", help="comma-separated stages to leave out: dlt, push, dag_parse")
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
    skip = {s for s in args.skip.split(",") if s}
    started = datetime.now(UTC)
    t_all = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix=f"handoff_bench_{args.tier}_"))
    sample = Path(args.sample_dir) if args.sample_dir else work / "sample"
    params = {"sample": str(sample), "contacts": cfg["contacts"], "days": cfg["days"],
              "end_date": END_DATE.isoformat(), "rows_file": str(work / "rows.copy"), "work": str(work),
              "push_sqls": cfg["push_sqls"], "push_rate": cfg["push_rate"]}
    say = lambda msg: print(f"[{time.perf_counter() - t_all:7.1f}s] {msg}", file=sys.stderr, flush=True)  # noqa: E731
    runs: list[dict[str, dict]] = [{} for _ in range(n_runs)]
    try:
        prepare_db(sample)
        info = machine_info()
        for i in range(n_runs):
            say(f"run {i + 1}/{n_runs}: gen")
            runs[i]["gen"] = run_stage("gen", params, work)
        say("raw.crm_* from the sample (rawfill, not timed)")
        crm_counts = fill_crm(sample)
        order = [s for s in ("load", "copy", "dlt") if s not in skip]
        for i in range(n_runs):
            for stage in order:
                say(f"run {i + 1}/{n_runs}: {stage}")
                runs[i][stage] = run_stage(stage, params, work)
        # raw.analytics_events now holds the loader's rows (the plain COPY put the same rows back)
        for i in range(n_runs):
            for stage in ("dbt_full", "dbt_incr"):
                say(f"run {i + 1}/{n_runs}: {stage}")
                runs[i][stage] = run_stage(stage, params, work)
        for stage in ("dag_parse", "push"):
            if stage in skip:
                continue
            for i in range(n_runs):
                say(f"run {i + 1}/{n_runs}: {stage}")
                runs[i][stage] = run_stage(stage, params, work)
    finally:
        if not args.keep_db:
            try:
                drop_db()
            except Exception as exc:  # noqa: BLE001 - reporting matters more than the cleanup
                print(f"could not drop {DB}: {exc}", file=sys.stderr)
        shutil.rmtree(work, ignore_errors=True)
    rows = build_report(args.tier, cfg, runs)
    total = time.perf_counter() - t_all
    result = {"tier": args.tier, "started_at": started.isoformat(), "total_seconds": total, "runs": n_runs,
              "config": {**cfg, "seed": SEED, "end_date": END_DATE.isoformat()}, "machine": info,
              "crm_rows_filled": crm_counts, "summary": rows, "raw_runs": runs}
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{args.tier}-{started.date().isoformat()}.json"
    path.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(markdown(args.tier, rows, info, n_runs))
    print(f"\ntotal {total:.0f} s; results: {path}")


if __name__ == "__main__":
    main()
