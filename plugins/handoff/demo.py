"""``handoff demo``: from nothing to a readable summary — warehouse, sample company, one daily run through
Airflow (extract/load → dbt → push to the CRM sandbox), then what landed where. Safe to run again."""

from __future__ import annotations

import argparse
import json
import shutil
import time
from datetime import UTC, date, datetime, timedelta

from handoff import settings

# marks a number of a period that has not ended by the run's data interval end (is_complete false in the marts)
IN_PROGRESS = "*"


def log(msg: str) -> None:
    print(f"[handoff demo] {msg}", flush=True)


def main(args: argparse.Namespace) -> int:
    from handoff import airflow_run, warehouse  # noqa: PLC0415

    t0 = time.monotonic()
    end = args.end_date or (datetime.now(UTC).date() - timedelta(days=1))
    tgt = warehouse.target()
    if tgt.local:
        warehouse.LocalCluster().up(log=log)
    warehouse.setup(tgt, log=log)

    try:
        with airflow_run.run_lock(end, command="handoff demo", log=log):
            _sample_and_run(args, tgt, end)
    except airflow_run.RunFailed as exc:
        raise SystemExit(f"handoff: error: {exc}") from None
    print(summary(tgt, end, time.monotonic() - t0))
    return 0


def _sample_and_run(args: argparse.Namespace, tgt, end: date) -> None:
    """The sample (regenerated, and the warehouse and CRM sandbox reset, when its parameters changed), then the
    daily run for ``end``: under the run lock, since both change what another run would be reading."""
    from handoff import airflow_run, local_services  # noqa: PLC0415

    wanted = {"seed": args.seed, "contacts": args.contacts, "days": args.days, "end_date": end.isoformat()}
    sample_dir = settings.paths().sample
    if _sample_params(sample_dir) != wanted:
        from handoff import sample  # noqa: PLC0415

        log(f"generating the sample company: {args.contacts:,} contacts × {args.days} days ending {end}")
        if sample_dir.exists():
            shutil.rmtree(sample_dir)
        reset_local_state(tgt, log)
        sample.generate(sample_dir, seed=args.seed, contacts=args.contacts, days=args.days, end_date=end,
                        progress=log)
    else:
        log(f"sample already in place ({sample_dir})")

    with local_services.crm_for_run(log=log):
        airflow_run.run_day(end, log=log)


def _sample_params(sample_dir) -> dict | None:
    try:
        manifest = json.loads((sample_dir / "manifest.json").read_text())
    except (FileNotFoundError, ValueError):
        return None
    return {k: manifest.get(k) for k in ("seed", "contacts", "days", "end_date")}


def reset_local_state(tgt, log) -> None:
    """A new sample replaces the old company: empty the warehouse's layers and the CRM sandbox."""
    from handoff import warehouse  # noqa: PLC0415

    with warehouse.connect("admin", autocommit=True, tgt=tgt) as conn:
        conn.execute("drop schema if exists raw, ops, staging, intermediate, marts cascade")
    warehouse.setup(tgt, log=log)
    crm = settings.paths().crm_state
    for path in crm.parent.glob(crm.name + "*"):
        path.unlink()
    log("warehouse layers and CRM sandbox reset for the new sample")


def summary(tgt, day: date, seconds: float) -> str:
    from handoff import warehouse  # noqa: PLC0415

    out: list[str] = ["", f"handoff — daily run for {day} finished in {seconds:.0f} s", "=" * 72]
    with warehouse.connect("admin", tgt=tgt) as conn:
        loaded = conn.execute(
            "select source_kind, count(*), coalesce(sum(rows_loaded), 0), coalesce(sum(rows_quarantined), 0)"
            " from ops.load_log where status = 'loaded' group by 1 order by 1").fetchall()
        out.append("Loaded into raw (all batches so far):")
        out += [f"  {kind:<16} {batches:>5} batches  {rows:>12,} rows  {bad:>8,} quarantined"
                for kind, batches, rows, bad in loaded] or ["  (nothing)"]
        files = dict(conn.execute("select outcome, count(*) from ops.landing_files group by 1").fetchall())
        out.append(f"Analytics landing folder (ops.landing_files): {files.get('loaded', 0):,} files loaded, "
                   f"{files.get('loaded_with_quarantine', 0):,} loaded with quarantined lines, "
                   f"{files.get('skipped', 0):,} skipped, {files.get('rejected', 0):,} rejected")
        problems = conn.execute(
            "select outcome, relative_path, reason from ops.landing_files where outcome in ('skipped', 'rejected')"
            " order by outcome, relative_path limit 10").fetchall()
        out += [f"  {outcome} {rel}: {reason}" for outcome, rel, reason in problems]
    with warehouse.connect("bi_reader", tgt=tgt) as conn:
        exists = conn.execute("select to_regclass('marts.dim_contacts') is not null").fetchone()[0]
        if not exists:
            out.append("marts not built yet")
            return "\n".join(out)
        stages = conn.execute(
            "select current_stage, count(*) from marts.dim_contacts group by 1 order by 2 desc").fetchall()
        out.append("\nContacts by current stage (marts.dim_contacts):")
        out += [f"  {stage:<14} {n:>8,}" for stage, n in stages]
        funnel = conn.execute(
            "select count(*) filter (where mql_at is not null), count(*) filter (where mql_inferred),"
            " count(*) filter (where sql_at is not null), count(*) filter (where sql_inferred)"
            " from marts.dim_contacts").fetchone()
        out.append(f"  reached MQL: {funnel[0]:,} ({funnel[1]:,} inferred)   reached SQL: {funnel[2]:,} "
                   f"({funnel[3]:,} inferred)")
        out.append(f"\nMQL→SQL cohorts, all contacts (marts.mql_sql_conversion_cohorts; {IN_PROGRESS} = still open):")
        rows = conn.execute(
            "select cohort_period, months_since_mql, mqls, conversion_rate, is_complete"
            " from marts.mql_sql_conversion_cohorts where segment_type = 'all'"
            " order by cohort_period, months_since_mql").fetchall()
        out += _cohort_table(rows, day)
        lagged = conn.execute(
            "select period, lag_periods, sqls, mqls, rate, is_complete from marts.mql_sql_lagged_conversion"
            " where segment_type = 'all' and lag_periods in (0, 2) order by period desc, lag_periods"
            " limit 8").fetchall()
        out.append(f"\nLagged conversion (SQLs in period / MQLs in period − lag), latest periods "
                   f"({IN_PROGRESS} = period in progress, SQLs so far):")
        out += _lagged_table(lagged)
        verdicts = conn.execute(
            "select volume.period, volume.mqls, volume.mql_goal, volume.sla_status, health.rate,"
            " health.health_status, volume.is_complete"
            " from marts.sla_mql_volume volume"
            " left join marts.mql_sql_rate_health health"
            "  on health.period = volume.period and health.segment_type = 'all'"
            " order by volume.period desc limit 3").fetchall()
        out.append(f"\nVerdicts, latest periods (marts.sla_mql_volume, marts.mql_sql_rate_health; {IN_PROGRESS} = "
                   "period in progress: figures so far, not judged until it ends):")
        out += _verdict_table(verdicts)
        queue = conn.execute("select count(*) from marts.sql_handoff_queue").fetchone()[0]
    with warehouse.connect("admin", tgt=tgt) as conn:
        pushed = dict(conn.execute(
            "select status, count(distinct dedupe_key) from ops.crm_push_log"
            " where action = 'create_task' or status in ('parked', 'skipped') group by 1").fetchall())
    out.append(f"\nHand-off to the CRM: {queue:,} new SQLs queued by this build; all runs so far: "
               f"{pushed.get('succeeded', 0):,} follow-up tasks created, {pushed.get('skipped', 0):,} skipped "
               f"(CRM already further along), {pushed.get('parked', 0):,} parked (ops.crm_push_log)")
    out += ["", "Where to look next:",
            "  handoff dashboard                                  # the conversion dashboard: open "
            "http://127.0.0.1:8501",
            "  handoff report --out report.html                   # the same views in one HTML file",
            "  psql \"$(handoff warehouse url --role bi_reader)\"   # the marts, as a BI tool sees them",
            "  handoff dbt docs generate && handoff dbt docs serve  # lineage and definitions",
            "  config/funnel.yml                                  # the SLA as code: change it, rerun",
            "  handoff airflow up                                 # real Airflow: open the URL it prints",
            f"  {settings.paths().airflow_home}/logs                # task logs of the run"]
    return "\n".join(out)


def _mark(complete: bool) -> str:
    """One character after a number: the in-progress mark, or a space (so the columns stay aligned)."""
    return " " if complete else IN_PROGRESS


def _cohort_table(rows, day: date) -> list[str]:
    by_cohort: dict = {}
    for cohort, k, mqls, rate, complete in rows:
        entry = by_cohort.setdefault(cohort, {"mqls": mqls, "rates": {}})
        if (cohort.year * 12 + cohort.month) + k > day.year * 12 + day.month:
            continue  # that period has not begun yet
        entry["rates"][k] = f"{rate:>6.0%}{_mark(complete)}"
    if not by_cohort:
        return ["  (no MQLs yet)"]
    width = max(len(e["rates"]) for e in by_cohort.values())
    lines = ["  cohort   MQLs " + "".join(f"{'+' + str(k):>6} " for k in range(width))]
    for cohort, entry in sorted(by_cohort.items()):
        cells = "".join(entry["rates"].get(k, " " * 7) for k in range(width))
        lines.append(f"  {cohort:%Y-%m}  {entry['mqls']:>5} {cells}")
    return [line.rstrip() for line in lines]


def _lagged_table(rows) -> list[str]:
    """(period, lag, sqls, mqls, rate, is_complete) rows; an incomplete period's ratio is marked."""
    lines = []
    for period, lag, sqls, mqls, rate, complete in rows:
        ratio = "n/a (no MQLs)" if rate is None else f"{rate:.1%}"
        lines.append(f"  {period:%Y-%m}  lag {lag}:  {sqls:>5} / {mqls:<5} = {ratio}"
                     + ("" if complete else f" {IN_PROGRESS} in progress"))
    return lines or ["  (no periods yet)"]


def _verdict_table(rows) -> list[str]:
    """(period, mqls, goal, sla_status, headline rate, health_status, is_complete) rows, latest first."""
    if not rows:
        return ["  (no periods yet)"]
    lines = [f"  period   {'MQLs / goal':>16}  {'goal':<12}{'lagged rate':>12}  health"]
    for period, mqls, goal, sla, rate, health, complete in rows:
        ratio = "n/a " if rate is None else f"{rate:.1%}{_mark(complete)}"
        lines.append(f"  {period:%Y-%m}  {mqls:>8,}{_mark(complete)} / {goal:<5,} {sla:<12}{ratio:>12}  "
                     f"{health or 'n/a'}")
    return lines
