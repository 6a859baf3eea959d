"""``handoff`` — the command line: local warehouse, sample data, CRM sandbox, daily run, load, push, demo.

Every command has ``--help``; errors exit non-zero with a sentence that says what to do — including an invalid
``config/sources.yml`` or funnel definition (one ``handoff: error: ...`` line naming the file and key, no traceback).

One module, though long: ``build_parser`` lists every command in one place, and each ``cmd_*`` only turns its
arguments into a call to the module that does the work (warehouse, load, push, lab, …).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path


class CliError(SystemExit):
    def __init__(self, message: str) -> None:
        super().__init__(f"handoff: error: {message}")


def log(msg: str) -> None:
    print(f"[handoff] {msg}", file=sys.stderr, flush=True)


# -- warehouse --------------------------------------------------------------------------------------------
def cmd_warehouse(args: argparse.Namespace) -> int:
    from handoff import warehouse  # noqa: PLC0415

    tgt = warehouse.target()
    if args.action == "url":
        if tgt.local and not warehouse.LocalCluster().is_running():
            log("the local warehouse is not running (start it with `handoff warehouse up`)")
        print(tgt.url(args.role))
        return 0
    if args.action == "psql":
        os.execvp("psql", ["psql", tgt.url(args.role)])
    if not tgt.local:
        if args.action == "up":
            warehouse.setup(tgt, log=log)
            log(f"external warehouse {tgt.host}:{tgt.port}/{tgt.dbname} is set up (schemas, tables, roles)")
        elif args.action == "status":
            with warehouse.connect("admin", tgt=tgt) as conn:
                version = conn.execute("show server_version").fetchone()[0]
            print(f"external warehouse {tgt.host}:{tgt.port}/{tgt.dbname}: reachable, PostgreSQL {version}")
        else:
            log("HANDOFF_WAREHOUSE_URL is set: handoff does not stop a warehouse it did not start")
        return 0
    cluster = warehouse.LocalCluster()
    if args.action == "up":
        started = cluster.up(log=log)
        warehouse.setup(tgt, log=log)
        log(("started" if started else "already running") + f": {tgt.host}:{tgt.port}/{tgt.dbname}")
    elif args.action == "down":
        log("stopped" if cluster.down(log=log) else "was not running")
    elif args.action == "status":
        running = cluster.is_running()
        print(f"local warehouse: {'running' if running else 'stopped'} (pid {cluster.postmaster_pid() or '-'}, "
              f"port {cluster.port}, data {cluster.pgdata})")
        return 0 if running else 3
    return 0


# -- airflow: the real services ------------------------------------------------------------------------------------
def cmd_airflow(args: argparse.Namespace) -> int:
    from handoff import airflow_services  # noqa: PLC0415

    if args.action == "up":
        try:
            started = airflow_services.up(unpaused=args.unpaused, port=args.port, executor=args.executor, log=log)
        except airflow_services.ServicesError as exc:
            raise CliError(f"{exc}\n(`handoff airflow down` stops what did start)") from None
        if started["admin_password"]:
            print(f"Airflow admin password (shown this once; kept in {airflow_services.credentials_file()}, mode "
                  f"0600): {started['admin_password']}")
        state = "unpaused: the scheduler runs each finished day" if not started["paused"] else \
            "paused (handoff airflow up --unpaused, or the toggle in the UI, to schedule it)"
        log(f"{airflow_services.DAG_ID} ({started['timetable']}) is {state}; tasks run on the {started['executor']}")
        print(f"Airflow UI: {started['url']} (user {airflow_services.ADMIN_USER})")
        return 0
    if args.action == "down":
        left = airflow_services.down(log=log)
        if left:
            raise CliError(f"processes still running after SIGKILL: {left}")
        return 0
    ok, lines = airflow_services.status()
    print("\n".join(lines))
    return 0 if ok else 3


# -- sample / crm-sandbox / funnel: delegated to their modules ---------------------------------------------
def cmd_sample(args: argparse.Namespace) -> int:
    from handoff import sample  # noqa: PLC0415

    return sample.main(args) or 0


def cmd_crm_sandbox(args: argparse.Namespace) -> int:
    from handoff import crm_sandbox  # noqa: PLC0415

    return crm_sandbox.run(args) or 0


def cmd_funnel(args: argparse.Namespace) -> int:
    if args.action in ("backtest", "suggest"):
        from handoff import lab  # noqa: PLC0415

        return (lab.run if args.action == "backtest" else lab.suggest.run)(args) or 0
    from handoff import funnel  # noqa: PLC0415

    return funnel.main(args) or 0


def cmd_explain(args: argparse.Namespace) -> int:
    from handoff import explain  # noqa: PLC0415

    try:
        return explain.main(args)
    except explain.ExplainError as exc:
        raise CliError(str(exc)) from None


# -- run / push / dbt ---------------------------------------------------------------------------------------
def parse_day(value: str) -> date:
    try:
        day = date.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a date in the form YYYY-MM-DD") from None
    if len(value) != 10:
        raise argparse.ArgumentTypeError(f"{value!r} is not a date in the form YYYY-MM-DD")
    today = datetime.now(UTC).date()
    if day >= today:
        raise argparse.ArgumentTypeError(
            f"{value} has not ended yet (today is {today} UTC): a run covers a whole, finished UTC day")
    return day


def parse_slots(value: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number of tasks at once (1 or more)")
    return int(value)


def cmd_run(args: argparse.Namespace) -> int:
    from handoff import (  # noqa: PLC0415
        airflow_run,
        local_services,
        sources,  # noqa: PLC0415
    )

    sources.load()  # a bad config/sources.yml is an error now, not after waiting for another run's lock
    started = datetime.now(UTC)
    try:
        with airflow_run.run_lock(args.date, wait=args.wait, log=log):
            _require_warehouse()
            with local_services.crm_for_run(log=log):
                try:
                    states = airflow_run.run_day(args.date, conf={"push_dry_run": args.push_dry_run}, log=log,
                                                 verbose=args.verbose, parallel=args.parallel, quiet=args.quiet)
                except airflow_run.RunFailed:
                    _report_landing(started)
                    raise
    except airflow_run.RunFailed as exc:
        raise CliError(str(exc)) from None
    ok = sum(1 for s in states.values() if s == "success")
    log(f"run for {args.date} succeeded: {ok}/{len(states)} tasks successful")
    _report_landing(started)
    return 0


def _report_landing(since: datetime, limit: int = 20) -> None:
    """Name the analytics files a run since ``since`` skipped or rejected (ops.landing_files)."""
    from handoff import warehouse  # noqa: PLC0415
    from handoff.load import landing_log  # noqa: PLC0415

    try:
        rows = landing_log.problems_since(warehouse.target().conninfo("loader"), since)
    except Exception as exc:  # noqa: BLE001 - the run's own outcome matters more than this report
        log(f"could not read ops.landing_files: {exc}")
        return
    if not rows:
        return
    log(f"analytics landing folder: {len(rows)} file(s) not loaded (ops.landing_files):")
    for rel, outcome, reason, _ in rows[:limit]:
        log(f"  {outcome} {rel}: {reason}")
    if len(rows) > limit:
        log(f"  ... and {len(rows) - limit} more in ops.landing_files (outcome skipped or rejected)")


def cmd_load(args: argparse.Namespace) -> int:
    """``handoff load analytics``: load the analytics landing folder now (for one day's interval), or with
    ``--dry-run`` list what a run would do with every file under it."""
    from handoff import airflow_run, sources, warehouse  # noqa: PLC0415
    from handoff.load import analytics, landing_log  # noqa: PLC0415

    cfg = sources.load().analytics  # a SourcesError is one `handoff: error:` line (main)
    landing_dir = args.landing or cfg.landing
    if not os.path.isdir(landing_dir):
        raise CliError(f"the landing folder {landing_dir} does not exist or is not a folder")
    _require_warehouse()
    day = args.date or yesterday()
    start, end = airflow_run.interval_for(day)
    conninfo = warehouse.target().conninfo("loader")
    if args.dry_run:
        try:
            planned = landing_log.dry_run(conninfo, landing_dir, start, end)
        except analytics.LoadError as exc:
            raise CliError(str(exc)) from None
        print(f"{landing_dir}: what the run for {day} (interval {day}T00:00Z → {end.date()}T00:00Z) would do; "
              "nothing written")
        width = min(max((len(p.relative) for p in planned), default=0), 60)
        for p in planned:
            print(f"  {p.relative:<{width}}  {p.describe()}")
        counts: dict[str, int] = {}
        for p in planned:
            key = {"previously_rejected": "skip", "duplicate": "skip"}.get(p.action, p.action)
            counts[key] = counts.get(key, 0) + 1
        order = ("load", "already_loaded", "skip", "reject", "later")
        print(f"{len(planned)} entries: " + ", ".join(f"{counts[k]} {k.replace('_', ' ')}" for k in order
                                                      if counts.get(k)))
        return 0
    # the loader's own log lines (each file, and the files not loaded) on stderr
    logger, level = logging.getLogger("handoff.load"), logging.getLogger("handoff.load").level
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("[handoff] %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        summary = analytics.load_analytics_files(
            conninfo, landing_dir, start, end, max_bad_share=cfg.max_bad_share, max_line_bytes=cfg.max_line_bytes,
            max_field_bytes=cfg.max_field_bytes, max_future_skew_hours=cfg.max_future_skew_hours)
    except analytics.LoadError as exc:
        raise CliError(str(exc)) from None
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    for key in ("files_loaded", "files_skipped", "files_ignored", "files_rejected", "files_previously_rejected",
                "rows_read", "rows_loaded", "rows_quarantined"):
        print(f"{key}: {summary[key]}")
    return 0


def cmd_push(args: argparse.Namespace) -> int:
    from handoff import local_services, warehouse  # noqa: PLC0415
    from handoff.push import push_queue  # noqa: PLC0415

    _require_warehouse()
    tgt = warehouse.target()
    as_of = datetime.now(UTC)
    with local_services.crm_client_for_cli(log=log) as client:
        summary = push_queue(tgt.conninfo("pusher"), client, run_id=f"cli-{as_of:%Y%m%dT%H%M%S}", as_of=as_of,
                             dry_run=args.dry_run)
    for key, value in summary.items():
        print(f"{key}: {value}")
    return 0


def cmd_crm_properties(args: argparse.Namespace) -> int:
    from handoff import local_services  # noqa: PLC0415
    from handoff.crm.errors import CrmError  # noqa: PLC0415
    from handoff.crm.properties import HANDOFF_PROPERTIES, ensure_properties  # noqa: PLC0415

    with local_services.crm_client_for_cli(log=log) as client:
        try:
            created = ensure_properties(client)
        except CrmError as exc:
            raise CliError(f"the CRM refused to read or create a property: {exc} (the private app needs a scope that "
                           "may write property definitions, e.g. crm.schemas.contacts.write; or create them in "
                           "HubSpot's settings: docs/crm-sandbox.md lists them)") from None
    wanted = [f"{t}.{d['name']}" for t, defs in HANDOFF_PROPERTIES.items() for d in defs]
    for name in wanted:
        print(f"{name}: {'created' if name in created else 'already there'}")
    return 0


def cmd_dbt(args: argparse.Namespace) -> int:
    from handoff import dbt_runner  # noqa: PLC0415

    _require_warehouse()
    return dbt_runner.run(args.dbt_args, check=False).returncode


def cmd_import_history(args: argparse.Namespace) -> int:
    from handoff import airflow_run, history, sources, warehouse  # noqa: PLC0415

    cfg = sources.load(args.sources)  # a SourcesError is one `handoff: error:` line (main)
    csv_dir = args.csv_dir if args.csv_dir is not None else cfg.crm.csv_dir
    try:  # the run lock, as `handoff run`: the import's dbt build --full-refresh replaces the tables a run builds
        with airflow_run.run_lock(args.export_date, command="handoff import-history", wait=args.wait, log=log):
            _require_warehouse()
            result = history.import_history(warehouse.target(), Path(csv_dir), cfg.crm,
                                            export_date=args.export_date, build=not args.no_build, log=log)
    except (history.HistoryImportError, airflow_run.RunLocked) as exc:
        raise CliError(str(exc)) from None
    for key, value in result.summary.items():
        print(f"{key}: {value}")
    if result.built:
        log("done: see marts.mql_sql_conversion_cohorts, marts.mql_sql_lagged_conversion and marts.dim_contacts")
    return 0


def _bi_reader_conninfo(dbname: str | None) -> str:
    from handoff import warehouse  # noqa: PLC0415

    _require_warehouse()
    return warehouse.target().conninfo("bi_reader", dbname=dbname)


def cmd_dashboard(args: argparse.Namespace) -> int:
    from handoff.dashboard import serve  # noqa: PLC0415

    conninfo = _bi_reader_conninfo(args.dbname)
    log(f"dashboard: open {serve.url(args.port)} (reads the marts as handoff_bi_reader; Ctrl-C stops it)")
    serve.serve(conninfo, args.port)
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    import psycopg  # noqa: PLC0415

    from handoff.dashboard import report  # noqa: PLC0415

    with psycopg.connect(_bi_reader_conninfo(args.dbname)) as conn:
        try:
            out = report.write(conn, Path(args.out), args.date)
        except ValueError as exc:
            raise CliError(str(exc)) from None
    log(f"report written: {out} ({out.stat().st_size:,} bytes, opens without a network)")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from handoff import demo  # noqa: PLC0415

    return demo.main(args)


def _require_warehouse() -> None:
    from handoff import warehouse  # noqa: PLC0415

    tgt = warehouse.target()
    if tgt.local and not warehouse.LocalCluster().is_running():
        raise CliError("the local warehouse is not running: start it with `handoff warehouse up`")
    try:
        with warehouse.connect("admin", tgt=tgt) as conn:
            conn.execute("select 1")
    except warehouse.WarehouseError as exc:
        raise CliError(str(exc)) from None


# -- parser -------------------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="handoff", description=__doc__.split("\n")[0].split("— ")[1])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("warehouse", help="the local PostgreSQL warehouse: up|down|status|url|psql")
    p.add_argument("action", choices=["up", "down", "status", "url", "psql"])
    p.add_argument("--role", default="admin", choices=["admin", "loader", "transformer", "pusher", "bi_reader"],
                   help="connect as this role (url, psql)")
    p.set_defaults(func=cmd_warehouse)

    p = sub.add_parser("airflow", help="real Airflow 3 on this machine (api-server, scheduler, dag-processor, "
                       "triggerer): up|down|status",
                       description="Start, stop or inspect Airflow's services as supervised background processes, "
                       "with their metadata in the database airflow_meta on the warehouse's PostgreSQL and pid and "
                       "log files under $HANDOFF_HOME/airflow/services/.")
    p.add_argument("action", choices=["up", "down", "status"])
    p.add_argument("--unpaused", action="store_true",
                   help="up: unpause handoff_daily so the scheduler runs each day once it is over (default: paused)")
    p.add_argument("--port", type=int, default=None,
                   help="up: the api-server's port on 127.0.0.1 (default: $HANDOFF_AIRFLOW_PORT, else 8080 when "
                        "free, else any free port; 0: any free port)")
    p.add_argument("--executor", choices=["local", "celery"], default=None,
                   help="up: run the tasks on the LocalExecutor (default) or on the CeleryExecutor: Redis (apt-get "
                        "install redis-server) as the broker on 127.0.0.1 and two Celery workers, all supervised")
    p.set_defaults(func=cmd_airflow)

    p = sub.add_parser("sample", help="generate a deterministic sample company (CRM + analytics exports)")
    _add_module_arguments("sample", p)
    p.set_defaults(func=cmd_sample)

    p = sub.add_parser("crm-sandbox", help="serve the local HubSpot-compatible CRM sandbox")
    _add_module_arguments("crm_sandbox", p)
    p.set_defaults(func=cmd_crm_sandbox)

    p = sub.add_parser("funnel", help="check or compile the funnel definition (config/funnel.yml), or backtest a "
                       "candidate on the warehouse's history")
    from handoff import funnel, lab  # noqa: PLC0415 - light: the definition model and the lab's arguments

    actions = funnel.add_arguments(p)
    lab.add_arguments(actions.add_parser(
        "backtest", help="what a candidate definition would have done on the warehouse's history",
        description="Rebuild scores and stages for CANDIDATE in the schema backtest (production untouched), write "
                    "marts.funnel_backtest and print both definitions side by side (docs/funnel.md)."))
    lab.suggest.add_arguments(actions.add_parser(
        "suggest", help="points for the existing rules learnt from history, written as a candidate to backtest",
        description="Fit the point-in-time rule hits against the opportunities that followed (logistic regression, "
                    "checked by time) and write the suggested points as a candidate YAML (docs/funnel.md)."))
    p.set_defaults(func=cmd_funnel)

    p = sub.add_parser("explain", help="one contact's stages with their evidence, score history and what it lacks")
    _add_module_arguments("explain", p)
    p.set_defaults(func=cmd_explain)

    p = sub.add_parser("run", help="run the daily DAG for one UTC day, in-process through Airflow")
    p.add_argument("--date", required=True, type=parse_day, help="the day to process, YYYY-MM-DD (UTC)")
    p.add_argument("--push-dry-run", action="store_true", help="preview the CRM push instead of sending it")
    p.add_argument("--verbose", action="store_true", help="stream Airflow's and dbt's output instead of logging it")
    p.add_argument("--quiet", action="store_true", help="do not print each task as it starts and ends")
    p.add_argument("--parallel", type=parse_slots, metavar="N",
                   help="run up to N tasks at once through Airflow's LocalExecutor, as a scheduler would (default: "
                        "one at a time, in-process)")
    p.add_argument("--wait", action="store_true",
                   help="when another run of this HANDOFF_HOME is going, wait for it instead of refusing")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("load", help="load a source now, or list what a run would do with it (--dry-run)")
    kinds = p.add_subparsers(dest="source", required=True, metavar="SOURCE")
    k = kinds.add_parser("analytics", help="the analytics landing folder (Segment JSONL exports)",
                         description="Load the analytics landing folder into raw.analytics_events as the daily run "
                                     "for --date would, recording every file's outcome in ops.landing_files; or, "
                                     "with --dry-run, list every file under it with what that run would do.")
    k.add_argument("--dry-run", action="store_true",
                   help="list every file and what a run would do with it (load, already loaded, skip + reason, "
                        "reject + reason); writes nothing")
    k.add_argument("--landing", metavar="DIR", help="the landing folder (default: analytics.landing in "
                   "config/sources.yml)")
    k.add_argument("--date", type=parse_day, help="the run's day, YYYY-MM-DD (UTC; default: yesterday)")
    k.set_defaults(func=cmd_load)

    p = sub.add_parser("push", help="push new SQLs from marts.sql_handoff_queue to the CRM")
    p.add_argument("--dry-run", action="store_true", help="write ops.crm_push_preview, call nothing")
    p.set_defaults(func=cmd_push)

    p = sub.add_parser("crm-properties", help="create the custom CRM properties the push writes, where missing")
    p.set_defaults(func=cmd_crm_properties)

    p = sub.add_parser("import-history", help="replay the company's past: load CRM CSV exports (contacts with "
                       "their became-stage dates, deals, lifecycle history) and build every model over it",
                       description="Load the CRM CSV exports in a folder (mapped by crm.csv_mapping in "
                       "config/sources.yml) and rebuild every model over the whole history (dbt build "
                       "--full-refresh): stages from the CRM's record, cohorts and lagged conversion for every "
                       "month the exports reach. No analytics files needed. See docs/bring-your-own-history.md.")
    _add_module_arguments("history", p)
    p.set_defaults(func=cmd_import_history)

    p = sub.add_parser("dbt", help="run dbt against the warehouse as the transformer role")
    p.add_argument("dbt_args", nargs=argparse.REMAINDER)
    p.set_defaults(func=cmd_dbt)

    p = sub.add_parser("dashboard", help="serve the conversion dashboard on 127.0.0.1 (reads the marts as "
                       "handoff_bi_reader)")
    p.add_argument("--port", type=int, default=int(os.environ.get("HANDOFF_DASHBOARD_PORT", "8501")),
                   help="port on 127.0.0.1 (default: $HANDOFF_DASHBOARD_PORT, else 8501)")
    p.add_argument("--dbname", default=None, help="the warehouse database (default: the warehouse's own)")
    p.set_defaults(func=cmd_dashboard)

    p = sub.add_parser("report", help="write the dashboard's headline views as one self-contained HTML file")
    p.add_argument("--out", required=True, metavar="FILE.html", help="where to write the report")
    p.add_argument("--date", type=parse_day, default=None, help="the run's day it is for, YYYY-MM-DD (a label)")
    p.add_argument("--dbname", default=None, help="the warehouse database (default: the warehouse's own)")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("demo", help="the whole thing from nothing: warehouse, sample, one daily run, summary")
    p.add_argument("--contacts", type=int, default=5000)
    p.add_argument("--days", type=int, default=180)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--end-date", type=parse_day, default=None, help="last sample day (default: yesterday UTC)")
    p.set_defaults(func=cmd_demo)

    return parser


def _add_module_arguments(module: str, parser: argparse.ArgumentParser) -> None:
    """Each sub-tool owns its options (``add_arguments``); a module not built yet says so when called."""
    import importlib  # noqa: PLC0415

    try:
        importlib.import_module(f"handoff.{module}").add_arguments(parser)
    except (ImportError, AttributeError) as exc:
        parser.set_defaults(_missing=str(exc))


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "_missing", None):
        raise CliError(f"`handoff {args.command}` is unavailable: {args._missing}")
    from handoff.funnel import FunnelDefinitionError  # noqa: PLC0415
    from handoff.sources import SourcesError  # noqa: PLC0415
    from handoff.warehouse import WarehouseError  # noqa: PLC0415

    try:
        return int(args.func(args) or 0)
    except (WarehouseError, SourcesError, FunnelDefinitionError) as exc:  # the message says what to fix
        raise CliError(str(exc)) from None
    except KeyboardInterrupt:
        return 130


def yesterday() -> date:
    return datetime.now(UTC).date() - timedelta(days=1)


if __name__ == "__main__":
    sys.exit(main())

