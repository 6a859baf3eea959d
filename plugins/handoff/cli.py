"""``handoff`` — the command line: local warehouse, sample data, CRM sandbox, daily run, push, demo.

Every command has ``--help``; errors exit non-zero with a sentence that says what to do.
"""

from __future__ import annotations

import argparse
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


# -- sample / crm-sandbox / funnel: delegated to their modules ---------------------------------------------
def cmd_sample(args: argparse.Namespace) -> int:
    from handoff import sample  # noqa: PLC0415

    return sample.main(args) or 0


def cmd_crm_sandbox(args: argparse.Namespace) -> int:
    from handoff import crm_sandbox  # noqa: PLC0415

    return crm_sandbox.run(args) or 0


def cmd_funnel(args: argparse.Namespace) -> int:
    from handoff import funnel  # noqa: PLC0415

    return funnel.main(args) or 0


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
    from handoff import airflow_run, local_services  # noqa: PLC0415

    _require_warehouse()
    with local_services.crm_for_run(log=log):
        try:
            states = airflow_run.run_day(args.date, conf={"push_dry_run": args.push_dry_run}, log=log,
                                         verbose=args.verbose, parallel=args.parallel)
        except airflow_run.RunFailed as exc:
            raise CliError(str(exc)) from None
    ok = sum(1 for s in states.values() if s == "success")
    log(f"run for {args.date} succeeded: {ok}/{len(states)} tasks successful")
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


def cmd_dbt(args: argparse.Namespace) -> int:
    from handoff import dbt_runner  # noqa: PLC0415

    _require_warehouse()
    return dbt_runner.run(args.dbt_args, check=False).returncode


def cmd_import_history(args: argparse.Namespace) -> int:
    from handoff import history, sources, warehouse  # noqa: PLC0415

    try:
        cfg = sources.load(args.sources)
    except sources.SourcesError as exc:
        raise CliError(str(exc)) from None
    csv_dir = args.csv_dir if args.csv_dir is not None else cfg.crm.csv_dir
    _require_warehouse()
    try:
        result = history.import_history(warehouse.target(), Path(csv_dir), cfg.crm.csv_mapping,
                                        export_date=args.export_date, build=not args.no_build, log=log)
    except history.HistoryImportError as exc:
        raise CliError(str(exc)) from None
    for key, value in result.summary.items():
        print(f"{key}: {value}")
    if result.built:
        log("done: see marts.mql_sql_conversion_cohorts, marts.mql_sql_lagged_conversion and marts.dim_contacts")
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

    p = sub.add_parser("sample", help="generate a deterministic sample company (CRM + analytics exports)")
    _add_module_arguments("sample", p)
    p.set_defaults(func=cmd_sample)

    p = sub.add_parser("crm-sandbox", help="serve the local HubSpot-compatible CRM sandbox")
    _add_module_arguments("crm_sandbox", p)
    p.set_defaults(func=cmd_crm_sandbox)

    p = sub.add_parser("funnel", help="check or compile the funnel definition (config/funnel.yml)")
    _add_module_arguments("funnel", p)
    p.set_defaults(func=cmd_funnel)

    p = sub.add_parser("run", help="run the daily DAG for one UTC day, in-process through Airflow")
    p.add_argument("--date", required=True, type=parse_day, help="the day to process, YYYY-MM-DD (UTC)")
    p.add_argument("--push-dry-run", action="store_true", help="preview the CRM push instead of sending it")
    p.add_argument("--verbose", action="store_true", help="stream Airflow's and dbt's output instead of logging it")
    p.add_argument("--parallel", type=parse_slots, metavar="N",
                   help="run up to N tasks at once through Airflow's LocalExecutor, as a scheduler would (default: "
                        "one at a time, in-process)")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("push", help="push new SQLs from marts.sql_handoff_queue to the CRM")
    p.add_argument("--dry-run", action="store_true", help="write ops.crm_push_preview, call nothing")
    p.set_defaults(func=cmd_push)

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
    from handoff.warehouse import WarehouseError  # noqa: PLC0415

    try:
        return int(args.func(args) or 0)
    except WarehouseError as exc:
        raise CliError(str(exc)) from None
    except KeyboardInterrupt:
        return 130


def yesterday() -> date:
    return datetime.now(UTC).date() - timedelta(days=1)


if __name__ == "__main__":
    sys.exit(main())

