"""``handoff import-history``: replay a company's past from its CRM's CSV exports.

Loads the exports in a folder (contacts with their "Became a ... Date" columns, deals, a lifecycle-history export,
... as ``config/sources.yml`` maps them: ``crm.csv_mapping``) into ``raw.crm_*`` with the CRM CSV loader, then
rebuilds every dbt model over the whole history (``dbt build --full-refresh``), so the stage dates, the cohorts
and the lagged conversion cover every month the exports reach. No analytics files are needed: the CRM's record
of each stage is evidence (``config/funnel.yml`` ``evidence``). The user guide is docs/bring-your-own-history.md.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from handoff.sources import CrmSource


class HistoryImportError(RuntimeError):
    """The import cannot go on; the message says what to do."""


@dataclass(frozen=True)
class ImportResult:
    load: dict[str, Any]
    built: bool
    summary: dict[str, Any]


def parse_export_day(value: str) -> date:
    try:
        if len(value) != 10:
            raise ValueError
        return date.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a date in the form YYYY-MM-DD") from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--csv-dir", type=Path, default=None,
                        help="the folder of CRM CSV exports (default: crm.csv_dir in the sources file)")
    parser.add_argument("--sources", type=Path, default=None,
                        help="the sources configuration whose crm.csv_mapping maps the export's columns "
                             "(default: config/sources.yml)")
    parser.add_argument("--export-date", type=parse_export_day, default=None, metavar="YYYY-MM-DD",
                        help="the last day the exports cover: the marts report up to its end (default: the day of "
                             "the latest contact change in the exports)")
    parser.add_argument("--no-build", action="store_true",
                        help="load the exports only; skip the dbt build over the whole history")
    parser.add_argument("--wait", action="store_true",
                        help="if a handoff run (or another import) of this HANDOFF_HOME is going on, wait for it to "
                             "finish instead of stopping")


def import_history(tgt, csv_dir: Path, crm: CrmSource, *, export_date: date | None = None, build: bool = True,
                   log: Callable[[str], None] = print) -> ImportResult:
    """Load the CSV exports in ``csv_dir`` into the warehouse ``tgt`` as ``crm`` (the sources file's ``crm:``)
    maps them — ``csv_mapping``, ``csv_dates`` and ``csv_max_bad_share``, as the daily run reads them — and rebuild
    every model over the whole history. Raises ``HistoryImportError`` with a sentence that says what to do."""
    from handoff import dbt_runner, funnel  # noqa: PLC0415
    from handoff.load.batches import LoadError  # noqa: PLC0415
    from handoff.load.crm_csv import load_crm_csv  # noqa: PLC0415

    mapping = crm.csv_mapping
    contacts = mapping.get("contacts")
    if not csv_dir.is_dir():
        raise HistoryImportError(f"the CSV folder {csv_dir} does not exist")
    contacts_file = csv_dir / (contacts.file if contacts is not None else "contacts.csv")
    if not contacts_file.exists():
        raise HistoryImportError(f"{contacts_file} is missing: the history needs at least the contacts export "
                                 "(crm.csv_mapping.contacts.file in the sources file names it)")
    try:
        definition = funnel.load()
    except funnel.FunnelDefinitionError as exc:
        raise HistoryImportError(str(exc)) from None
    stale = funnel.out_of_sync(definition)
    if stale:
        raise HistoryImportError(f"the dbt seeds are out of sync with the funnel definition ({', '.join(stale)}): "
                                 "run `handoff funnel compile` first")

    interval_end = (datetime.combine(export_date + timedelta(days=1), time(), tzinfo=UTC) if export_date
                    else None)
    log(f"loading the CRM exports in {csv_dir}")
    try:
        loaded = load_crm_csv(tgt.conninfo("loader"), csv_dir, mapping,
                              interval_end=interval_end or datetime.now(UTC), **crm.csv_load_options())
    except LoadError as exc:
        raise HistoryImportError(str(exc)) from None
    for obj, res in loaded["objects"].items():
        log(f"  {obj}: {res['status']}, {res['rows_loaded']} rows loaded, {res['rows_quarantined']} quarantined")
    if loaded["rows_quarantined"]:
        log(f"{loaded['rows_quarantined']} row(s) quarantined: see raw.quarantine (each row with its reason)")
    if not build:
        return ImportResult(loaded, False, {})

    log("building every model over the whole history (dbt build --full-refresh)")
    res = dbt_runner.run(["build", "--full-refresh"], check=False,
                         env=dbt_runner.interval_env(None, interval_end))
    if res.returncode != 0:
        raise HistoryImportError(f"dbt build failed (exit {res.returncode}); its output above names the model or "
                                 "test")
    return ImportResult(loaded, True, summarize(tgt))


def summarize(tgt) -> dict[str, Any]:
    """What the history gave: contacts, MQLs, SQLs (by evidence) and the cohort months."""
    import psycopg  # noqa: PLC0415

    with psycopg.connect(tgt.conninfo("admin")) as conn:
        row = conn.execute("""
            select count(*),
                count(mql_at), count(*) filter (where mql_evidence_source = 'crm'),
                count(*) filter (where mql_evidence_source = 'inferred'),
                count(sql_at), count(*) filter (where sql_evidence_source = 'crm'),
                count(*) filter (where sql_evidence_source = 'inferred'),
                min(mql_at)::date, max(mql_at)::date
            from marts.dim_contacts""").fetchone()
        cohorts = conn.execute("select count(distinct cohort_period) from marts.mql_sql_conversion_cohorts "
                               "where segment_type = 'all'").fetchone()[0]
    keys = ("contacts", "mqls", "mqls_from_crm", "mqls_inferred", "sqls", "sqls_from_crm", "sqls_inferred",
            "first_mql_day", "last_mql_day")
    return {**dict(zip(keys, row, strict=True)), "cohorts": cohorts}
