"""Bring your own CRM history: a CSV export of contacts (create date, original source, became-MQL date) and deals
(close date, stage, associated contacts), no analytics files at all, through `handoff import-history`.

The fixture (tests/fixtures/crm_history/, its README counts every number below by hand): 18 contacts, 17 MQLs in
January–May 2026 (16 with a "Became a Marketing Qualified Lead Date", one inferred from a won deal), 12 SQLs (ten
contacts of won deals, one "Became a Sales Qualified Lead Date", one rep's change in the lifecycle-history export;
an SQL date and history entry of handoff's own push are not evidence); the history ends at 2026-07-01.
"""

from __future__ import annotations

import io
import os
import shutil
from contextlib import redirect_stdout
from datetime import UTC, date, datetime
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

import psycopg
import pytest
import yaml
from handoff import airflow_run, cli, settings, warehouse
from rawfill import drop_dbt_relations, truncate_raw

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "crm_history"

# cohort month -> (MQLs, sqls_cumulative for months_since_mql 0..6), counted by hand in the fixture's README
COHORTS = {
    date(2026, 1, 1): (5, [1, 2, 2, 3, 3, 3, 3]),
    date(2026, 2, 1): (4, [1, 2, 3, 3, 3, 3, 3]),
    date(2026, 3, 1): (3, [1, 1, 2, 2, 2, 2, 2]),
    date(2026, 4, 1): (4, [1, 1, 3, 3, 3, 3, 3]),
    date(2026, 5, 1): (1, [1, 1, 1, 1, 1, 1, 1]),
}
# the last complete months_since_mql of each cohort (its period ended by 2026-07-01)
LAST_COMPLETE = {date(2026, 1, 1): 5, date(2026, 2, 1): 4, date(2026, 3, 1): 3, date(2026, 4, 1): 2,
                 date(2026, 5, 1): 1}
# SQLs and MQLs per month (segment all)
SQLS = {1: 1, 2: 2, 3: 2, 4: 3, 5: 2, 6: 2}
MQLS = {1: 5, 2: 4, 3: 3, 4: 4, 5: 1, 6: 0}


def _same_rate(rate: Decimal, num: int, den: int) -> bool:
    """The mart's rate is num/den to 15 decimals (2/3 is stored as 0.6666…67)."""
    return abs(Fraction(rate) - Fraction(num, den)) < Fraction(1, 10**15)


def _rows(conninfo: str, query: str, params=()) -> list[tuple]:
    with psycopg.connect(conninfo) as conn:
        return conn.execute(query, params).fetchall()


@pytest.fixture(scope="module")
def imported(wh_target, tmp_path_factory):
    """`handoff import-history --csv-dir <copy of the fixture>` on the test database; yields (admin, stdout)."""
    admin = wh_target.conninfo("admin")
    drop_dbt_relations(admin)
    truncate_raw(admin)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute("truncate ops.file_ledger, ops.load_log cascade")
    csv_dir = tmp_path_factory.mktemp("crm_history")
    for name in ("contacts.csv", "deals.csv", "lifecycle_stage_history.csv"):
        shutil.copy(FIXTURE / name, csv_dir / name)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(warehouse, "target", lambda: wh_target)  # the CLI and dbt_runner.dbt_env ask for the target
        mp.setenv("HANDOFF_HOME", str(tmp_path_factory.mktemp("home")))  # its own run lock, not the checkout's
        mp.setattr(cli, "_require_warehouse", lambda: None)  # the session's test database is up
        out = io.StringIO()
        with redirect_stdout(out):
            assert cli.main(["import-history", "--csv-dir", str(csv_dir)]) == 0
    return admin, out.getvalue()


def test_the_import_loads_the_exports_and_prints_what_the_history_gave(imported):
    admin, out = imported
    assert _rows(admin, "select count(*) from raw.crm_contacts")[0][0] == 18
    assert _rows(admin, "select count(*) from raw.crm_deals")[0][0] == 10
    assert _rows(admin, "select count(*) from raw.analytics_events")[0][0] == 0
    summary = dict(line.split(": ", 1) for line in out.strip().splitlines())
    assert summary["contacts"] == "18"
    assert (summary["mqls"], summary["mqls_from_crm"], summary["mqls_inferred"]) == ("17", "16", "1")
    assert (summary["sqls"], summary["sqls_from_crm"], summary["sqls_inferred"]) == ("12", "2", "10")
    assert summary["cohorts"] == "5"


def test_cohorts_from_a_history_only_import_are_the_hand_counted_ones(imported):
    admin, _ = imported
    got: dict[date, dict[int, tuple]] = {}
    for cohort, k, mqls, sqls, rate, complete in _rows(admin, """
            select cohort_period, months_since_mql, mqls, sqls_cumulative, conversion_rate, is_complete
            from marts.mql_sql_conversion_cohorts where segment_type = 'all'"""):
        got.setdefault(cohort, {})[k] = (mqls, sqls, rate, complete)
    assert set(got) == set(COHORTS)
    for cohort, (mqls, cumulative) in COHORTS.items():
        # months 0..6, but only those begun by the interval end (2026-07-01): each of them has ended too
        assert sorted(got[cohort]) == list(range(LAST_COMPLETE[cohort] + 1)), cohort
        for k, sqls in enumerate(cumulative[:LAST_COMPLETE[cohort] + 1]):
            g_mqls, g_sqls, g_rate, g_complete = got[cohort][k]
            assert (g_mqls, g_sqls) == (mqls, sqls), (cohort, k)
            assert _same_rate(g_rate, sqls, mqls), (cohort, k, g_rate)
            assert g_complete, (cohort, k)
    # January at three months: 3 of 5; April at two: 3 of 4
    assert got[date(2026, 1, 1)][3][2] == Decimal("0.6")
    assert got[date(2026, 4, 1)][2][2] == Decimal("0.75")


def test_lagged_conversion_from_a_history_only_import_is_the_hand_counted_one(imported):
    admin, _ = imported
    rows = _rows(admin, """
        select extract(month from period)::int, lag_periods, sqls, mqls, rate, is_sales_cycle_lag
        from marts.mql_sql_lagged_conversion where segment_type = 'all'""")
    got = {(m, lag): (sqls, mqls, rate, headline) for m, lag, sqls, mqls, rate, headline in rows}
    assert {m for m, _ in got} == set(range(1, 7))  # January to June
    for (month, lag), (sqls, mqls, rate, headline) in got.items():
        want_mqls = MQLS.get(month - lag, 0)
        assert (sqls, mqls) == (SQLS[month], want_mqls), (month, lag)
        if want_mqls == 0:
            assert rate is None, (month, lag)
        else:
            assert _same_rate(rate, SQLS[month], want_mqls), (month, lag, rate)
        assert headline == (lag == 2)
    # the headline (SQLs in month m / MQLs in month m - 2): March 2/5, April 3/4, June 2/4
    assert got[(3, 2)][2] == Decimal("0.4")
    assert got[(4, 2)][2] == Decimal("0.75")
    assert got[(6, 2)][2] == Decimal("0.5")
    assert got[(6, 0)][2] is None  # no MQLs in June


def test_each_stage_says_which_evidence_set_it(imported):
    admin, _ = imported
    contacts = {cid: rest for cid, *rest in _rows(admin, """
        select contact_id, lead_at, mql_at, mql_evidence_source, mql_inferred, sql_at, sql_evidence_source,
            sql_inferred, customer_at, current_stage
        from marts.dim_contacts""")}
    assert len(contacts) == 18
    utc = UTC
    # 101: became MQL on Jan 5 (the CRM's date); its won deal (Feb 10) makes it customer, SQL inferred
    assert contacts["101"] == [datetime(2026, 1, 3, 9, tzinfo=utc), datetime(2026, 1, 5, 10, tzinfo=utc), "crm",
                               False, datetime(2026, 2, 10, 16, tzinfo=utc), "inferred", True,
                               datetime(2026, 2, 10, 16, tzinfo=utc), "customer"]
    # 113: no MQL date, a won deal: MQL and SQL inferred at the close
    assert contacts["113"][1:7] == [datetime(2026, 4, 10, 16, tzinfo=utc), "inferred", True,
                                    datetime(2026, 4, 10, 16, tzinfo=utc), "inferred", True]
    # 118: the CRM's SQL date
    assert contacts["118"][1:7] == [datetime(2026, 5, 4, 10, tzinfo=utc), "crm", False,
                                    datetime(2026, 5, 20, 15, tzinfo=utc), "crm", False]
    # 107: its deal was lost: an MQL only
    assert contacts["107"][4:] == [None, None, False, None, "mql"]
    # 109: a rep's SQL in the lifecycle-history export ("Sales Qualified Lead", CRM_UI)
    assert contacts["109"][1:7] == [datetime(2026, 2, 25, 10, tzinfo=utc), "crm", False,
                                    datetime(2026, 4, 14, 11, tzinfo=utc), "crm", False]
    # 117: its SQL date and history entry are handoff's own push (INTEGRATION): a lead only
    assert contacts["117"][1:] == [None, None, False, None, None, False, None, "lead"]
    # the transitions of 101: SQL and opportunity inferred from the won deal, at its close
    transitions = _rows(admin, """
        select to_stage, from_stage, transitioned_at, evidence_source, is_inferred from marts.fct_stage_transitions
        where contact_id = '101'
        order by transitioned_at,
            array_position(array['lead', 'mql', 'sql', 'opportunity', 'customer'], to_stage)""")
    won = datetime(2026, 2, 10, 16, tzinfo=utc)
    assert transitions == [("lead", "visitor", datetime(2026, 1, 3, 9, tzinfo=utc), "crm", False),
                           ("mql", "lead", datetime(2026, 1, 5, 10, tzinfo=utc), "crm", False),
                           ("sql", "mql", won, "inferred", True),
                           ("opportunity", "sql", won, "inferred", True),
                           ("customer", "opportunity", won, "crm", False)]


def test_import_history_refuses_a_folder_without_a_contacts_export(wh_target, tmp_path, monkeypatch):
    (tmp_path / "deals.csv").write_text((FIXTURE / "deals.csv").read_text())
    monkeypatch.setattr(warehouse, "target", lambda: wh_target)
    with pytest.raises(SystemExit) as exc:
        cli.main(["import-history", "--csv-dir", str(tmp_path)])
    assert str(exc.value.code) == (f"handoff: error: {tmp_path / 'contacts.csv'} is missing: the history needs at "
                                   "least the contacts export (crm.csv_mapping.contacts.file in the sources file "
                                   "names it)")
    with pytest.raises(SystemExit) as exc:
        cli.main(["import-history", "--csv-dir", str(tmp_path / "nowhere")])
    assert str(exc.value.code) == f"handoff: error: the CSV folder {tmp_path / 'nowhere'} does not exist"


def test_stage_dates_from_the_api_shape_are_read_as_iso_or_epoch_milliseconds(imported):
    """The API extract's contacts carry hs_lifecyclestage_<stage>_date / hs_v2_date_entered_<stage> as ISO-8601 or
    epoch-millisecond strings: both are stage dates; an empty or unreadable value is none."""
    admin, _ = imported
    record = {"id": "900", "properties": {
        "createdate": "2025-12-01T09:00:00.000Z", "lastmodifieddate": "2026-06-30T12:00:00.000Z",
        "hs_v2_date_entered_marketingqualifiedlead": "1767225600000",  # 2026-01-01 00:00 UTC
        "hs_lifecyclestage_customer_date": "2026-02-01T10:00:00.000Z",
        "hs_lifecyclestage_lead_date": "", "hs_lifecyclestage_opportunity_date": "soon",
        "hs_v2_date_entered_1234567": "2026-01-15 08:30"}}  # a custom stage: read, mapped to no handoff stage
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute("insert into raw.crm_contacts (_batch_id, _loaded_at, _source, record_id, updated_at, archived, "
                     "record) values (gen_random_uuid(), now(), 'test', '900', '2026-06-30T12:00:00Z', false, %s)",
                     [psycopg.types.json.Jsonb(record)])
        try:
            got = conn.execute("select property, lifecycle_stage_raw, lifecycle_stage, entered_at "
                               "from staging.stg_crm__contact_stage_dates where contact_id = '900' "
                               "order by property").fetchall()
        finally:
            conn.execute("delete from raw.crm_contacts where record_id = '900'")
    assert got == [
        ("hs_lifecyclestage_customer_date", "customer", "customer", datetime(2026, 2, 1, 10, tzinfo=UTC)),
        ("hs_v2_date_entered_1234567", "1234567", None, datetime(2026, 1, 15, 8, 30, tzinfo=UTC)),
        ("hs_v2_date_entered_marketingqualifiedlead", "marketingqualifiedlead", "mql",
         datetime(2026, 1, 1, tzinfo=UTC)),
    ]


def test_import_history_has_help(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["import-history", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for option in ("--csv-dir", "--sources", "--export-date", "--no-build"):
        assert option in out


def _us_sources(tmp_path: Path, **crm) -> Path:
    """The shipped sources file with crm: changed as given (month-first dates and so on)."""
    data = yaml.safe_load((settings.REPO_ROOT / "config" / "sources.yml").read_text())
    data["crm"].update(crm)
    path = tmp_path / "sources.yml"
    path.write_text(yaml.safe_dump(data))
    return path


def _us_export(csv_dir: Path) -> None:
    csv_dir.mkdir()
    (csv_dir / "contacts.csv").write_text(
        "Record ID,Create Date,Last Modified Date,Lifecycle Stage,Became a Marketing Qualified Lead Date\n"
        "201,01/03/2026 09:00,06/30/2026 12:00,Marketing Qualified Lead,01/05/2026 10:00 AM\n"
        "202,02/01/2026 09:00,06/30/2026 12:00,Lead,\n"
        "203,02/02/2026 09:00,30/06/2026 12:00,Lead,\n")  # day first: not a month-first date
    (csv_dir / "lifecycle_stage_history.csv").write_text(
        "Contact ID,Lifecycle Stage,Changed At,Source Type,Changed By User ID\n"
        "201,Marketing Qualified Lead,01/05/2026 10:00,CRM_UI,7\n")


def test_import_history_reads_dates_and_the_bad_share_from_the_sources_file(wh, tmp_path, monkeypatch):
    """crm.csv_dates and crm.csv_max_bad_share apply to import-history as they do to the daily run."""
    monkeypatch.setenv("HANDOFF_HOME", str(tmp_path / "home"))  # its own run lock, not the checkout's
    monkeypatch.setattr(cli, "_require_warehouse", lambda: None)  # the session's test database is up
    monkeypatch.setattr(warehouse, "target", lambda: wh)
    csv_dir = tmp_path / "exports"
    _us_export(csv_dir)
    # 1 bad row of 3: above the default 1% the file is rejected, nothing loaded or ledgered
    strict = _us_sources(tmp_path, csv_dates={"format": "month_first", "timezone": "America/New_York"})
    with pytest.raises(SystemExit) as exc:
        cli.main(["import-history", "--csv-dir", str(csv_dir), "--sources", str(strict), "--no-build"])
    assert "contacts.csv: 1 of 3 rows bad (33.33% > crm.csv_max_bad_share 1.00%)" in str(exc.value.code)
    assert "unparseable Last Modified Date: '30/06/2026 12:00'" in str(exc.value.code)
    assert _rows(wh.conninfo("admin"), "select count(*) from raw.crm_contacts") == [(0,)]
    # the share raised in the sources file: the month-first dates load, in New York time, as ISO-8601 UTC
    lenient = _us_sources(tmp_path, csv_dates={"format": "month_first", "timezone": "America/New_York"},
                          csv_max_bad_share=0.5)
    assert cli.main(["import-history", "--csv-dir", str(csv_dir), "--sources", str(lenient), "--no-build"]) == 0
    [(record,)] = _rows(wh.conninfo("admin"), "select record from raw.crm_contacts where record_id = '201'")
    assert record["createdAt"] == "2026-01-03T14:00:00.000Z"
    assert record["updatedAt"] == "2026-06-30T16:00:00.000Z"
    assert record["properties"]["hs_lifecyclestage_marketingqualifiedlead_date"] == "2026-01-05T15:00:00.000Z"
    assert record["propertiesWithHistory"]["lifecyclestage"][0]["timestamp"] == "2026-01-05T15:00:00.000Z"
    assert _rows(wh.conninfo("admin"), "select record_id from raw.crm_contacts order by 1") == [("201",), ("202",)]
    assert _rows(wh.conninfo("admin"), "select _line, record_ref, reason from raw.quarantine") == [
        (4, "203", "unparseable Last Modified Date: '30/06/2026 12:00'")]


def test_import_history_takes_the_run_lock(tmp_path, monkeypatch):
    """import-history rebuilds every model (dbt build --full-refresh): not while a `handoff run` holds the lock."""
    monkeypatch.setenv("HANDOFF_HOME", str(tmp_path / "home"))  # a lock of this test's own
    csv_dir = tmp_path / "exports"
    csv_dir.mkdir()
    shutil.copy(FIXTURE / "contacts.csv", csv_dir / "contacts.csv")

    def past_the_lock() -> None:  # stop before any warehouse work
        raise cli.CliError("past the lock")

    monkeypatch.setattr(cli, "_require_warehouse", past_the_lock)
    with airflow_run.run_lock(date(2026, 6, 30)):
        with pytest.raises(SystemExit) as exc:
            cli.main(["import-history", "--csv-dir", str(csv_dir), "--no-build"])
    assert str(exc.value.code).startswith(
        f"handoff: error: another handoff run for 2026-06-30 (pid {os.getpid()}) is running")
    # and a run is refused while an import holds it, naming the import
    with airflow_run.run_lock(None, command="handoff import-history"):
        with pytest.raises(SystemExit) as exc:
            cli.main(["run", "--date", "2026-06-30"])
    assert f"another handoff import-history (pid {os.getpid()}) is running" in str(exc.value.code)
    # released: the next attempt gets past the lock
    with pytest.raises(SystemExit) as exc:
        cli.main(["import-history", "--csv-dir", str(csv_dir), "--no-build"])
    assert str(exc.value.code) == "handoff: error: past the lock"
