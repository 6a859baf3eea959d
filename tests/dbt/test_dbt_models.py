"""The dbt project end to end on a small generated sample: real Postgres, real dbt.

One module-scoped build (800 contacts × 90 days), then checks on values a person can recompute: the marts are
filled and carry their contract columns, no mart holds an email or phone number, the conversion marts equal a
plain-Python recomputation, the rule-based MQL/SQL days equal the days the sample planted, the measured channel
ranking follows the planted one, and day-by-day incremental runs equal a full refresh.

One module, though long: every check reads the one module-scoped build (a minute and more of dbt), which a split
would repeat per module.
"""

from __future__ import annotations

import contextlib
import csv
import gzip
import hashlib
import json
import os
import random
import re
import signal
import statistics
import subprocess
import uuid
from collections import Counter, defaultdict
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

import psycopg
import pytest
import rule_lift
from handoff import dbt_runner, funnel
from rawfill import drop_dbt_relations, fill, truncate_raw

from tests.waiting import wait_until

END = date(2026, 11, 30)
INTERVAL_END = datetime(2026, 12, 1, tzinfo=UTC)
_DBNAME = ["handoff_test"]  # the test database (wh_target.dbname; HANDOFF_TEST_DB overrides)
SEGMENT_COLUMNS = ("original_source", "first_touch_channel", "persona", "industry", "company_size_band")

CONTRACTS = {  # docs/architecture.md "Mart contracts"
    "dim_contacts": ["contact_id", "crm_contact_id", "email_hash", "company_id", "persona", "industry",
                     "company_size_band", "original_source", "owner_id", "current_stage", "lead_at", "mql_at",
                     "mql_inferred", "mql_evidence_source", "sql_at", "sql_inferred", "sql_evidence_source",
                     "opportunity_at", "customer_at", "is_disqualified",
                     "disqualified_reason", "current_score"],
    "fct_contact_engagement_daily": ["contact_id", "activity_date", "sessions", "pageviews", "form_submissions",
                                     "downloads_awareness", "downloads_consideration", "downloads_decision",
                                     "pricing_page_views", "email_opens", "email_clicks", "social_interactions",
                                     "meetings"],
    "fct_contact_scores_daily": ["contact_id", "score_date", "score", "fit_score", "engagement_score"],
    "fct_stage_transitions": ["contact_id", "from_stage", "to_stage", "transitioned_at", "evidence_source",
                              "rule_ids", "definition_version"],
    "fct_stage_durations": ["contact_id", "stage", "entered_at", "exited_at", "next_stage", "days_in_stage",
                            "is_current", "is_inferred", "definition_version"],
    "stage_durations_by_segment": ["stage", "segment_type", "segment_value", "contacts_exited",
                                   "median_days_in_stage", "p75_days_in_stage", "contacts_current",
                                   "median_days_current", "contacts_inferred"],
    "mql_sql_conversion_cohorts": ["cohort_period", "segment_type", "segment_value", "months_since_mql", "mqls",
                                   "sqls_cumulative", "conversion_rate", "is_complete", "median_days_mql_to_sql"],
    "mql_sql_lagged_conversion": ["period", "segment_type", "segment_value", "lag_periods", "sqls", "mqls", "rate"],
    "sql_handoff_queue": ["dedupe_key", "contact_id", "crm_contact_id", "owner_id", "sql_at", "score",
                          "rules_fired", "top_content", "first_touch_channel", "last_activity_at"],
    "sla_mql_volume": ["period", "mqls", "mql_goal", "is_goal_met"],
    "sla_sql_follow_up": ["contact_id", "owner_id", "sql_at", "hours_to_follow_up", "sla_hours", "sla_status"],
    "mql_sql_rate_health": ["period", "segment_type", "segment_value", "rate", "health_status", "explanation"],
    "funnel_rule_lift": ["rule_id", "contacts_with", "outcomes_with", "rate_with", "contacts_without",
                         "outcomes_without", "rate_without", "lift", "lift_lower", "lift_upper", "definition_version"],
}


class _InProcessDbt:
    """dbt in this process, the project parsed once (dbtRunner with a preloaded manifest): the module runs dbt
    some twenty times, and a fresh `dbt` process would spend ~4 s of each on Python start-up, imports and parsing.
    The interval reaches the models through the environment at run time (macros/incremental.sql), not the parse."""

    def __init__(self) -> None:
        self.runner = None

    @staticmethod
    @contextlib.contextmanager
    def _environ(env: dict[str, str]):
        saved = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        try:
            yield
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v

    def __call__(self, env: dict[str, str], args: list[str]) -> None:
        from dbt.cli.main import dbtRunner  # noqa: PLC0415

        flags = ["--project-dir", str(dbt_runner.PROJECT), "--profiles-dir", str(dbt_runner.PROJECT), "--quiet"]
        with self._environ({**dbt_runner.dbt_env(), **env}):
            if self.runner is None:
                parsed = dbtRunner().invoke(["parse", *flags])
                assert parsed.success, parsed.exception
                self.runner = dbtRunner(manifest=parsed.result)
            res = self.runner.invoke([*args, *flags])
        if not res.success:
            failed = [f"{r.node.name}: {r.message}" for r in getattr(res.result, "results", None) or []
                      if str(r.status) in ("error", "fail")]
            raise AssertionError(f"dbt {' '.join(args)} failed: {failed or res.exception}")


_in_process_dbt = _InProcessDbt()


def _dbt(tmp: Path, *args: str, start: datetime | None = None, end: datetime = INTERVAL_END) -> None:
    env = {"HANDOFF_DBT_DBNAME": _DBNAME[0], "DBT_TARGET_PATH": str(tmp / "target"),
           "DBT_LOG_PATH": str(tmp / "logs"), **dbt_runner.interval_env(start, end)}
    _in_process_dbt(env, list(args))


@pytest.fixture(scope="module")
def built(wh_target, tmp_path_factory):
    """Generate the sample, fill raw.*, run `dbt build` on handoff_test; yields (conninfo, sample, tmp)."""
    sample_mod = pytest.importorskip("handoff.sample")
    tmp = tmp_path_factory.mktemp("dbt")
    _DBNAME[0] = wh_target.dbname
    sample = tmp / "sample"
    sample_mod.generate(sample, seed=7, contacts=800, days=90, end_date=END)
    admin = wh_target.conninfo("admin")
    drop_dbt_relations(admin)  # a clean slate: other test modules may leave stand-ins (e.g. the push's queue)
    truncate_raw(admin)
    fill(admin, sample)
    _dbt(tmp, "build")
    return admin, sample, tmp


def _rows(conninfo: str, query: str, params=()) -> list[dict]:
    with psycopg.connect(conninfo) as conn, conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
        return cur.execute(query, params).fetchall()


def test_marts_are_filled_and_keep_their_contracts(built):
    admin, _, _ = built
    for table, contract in CONTRACTS.items():
        cols = {r["column_name"] for r in _rows(admin, "select column_name from information_schema.columns "
                                                      "where table_schema = 'marts' and table_name = %s", [table])}
        assert set(contract) <= cols, f"marts.{table} lacks {set(contract) - cols}"
        if table != "sql_handoff_queue":  # may legitimately be empty once everything is pushed
            assert _rows(admin, f"select count(*) as n from marts.{table}")[0]["n"] > 0, f"marts.{table} is empty"
    assert _rows(admin, "select count(*) as n from marts.sql_handoff_queue")[0]["n"] > 0


def test_attributed_events_keep_one_row_per_staged_event(built):
    """int_events_attributed is incremental: its unique index refuses a second row for an event, and equal_rowcount
    (tests/generic) against the staged events fails when an event went missing; with the row back it passes. On a
    daily run it counts the events the run staged (the last write) and finds each attributed: a missing event of
    the last write fails it, an older one only the whole count."""
    admin, _, tmp = built
    day = INTERVAL_END - timedelta(days=1)
    grain_test = ["test", "--select", "int_events_attributed,test_name:equal_rowcount"]
    last_write = "(select max(_written_at) from staging.stg_analytics__events)"
    with psycopg.connect(admin, autocommit=True) as conn:
        with pytest.raises(psycopg.errors.UniqueViolation):
            conn.execute("insert into intermediate.int_events_attributed "
                         "select * from intermediate.int_events_attributed order by event_id limit 1")
        # the build staged every event at once: the days before the last as an older write
        conn.execute("update staging.stg_analytics__events set _written_at = _written_at - interval '1 day' "
                     "where event_date < %s", [END])
        try:
            for which, checked_daily in ((f"_written_at = {last_write}", True), (f"_written_at < {last_write}", False)):
                conn.execute("create temp table held as select * from intermediate.int_events_attributed "
                             "where event_id = (select event_id from staging.stg_analytics__events "
                             f"where {which} order by event_id limit 1)")
                assert conn.execute("select count(*) from held").fetchone()[0] == 1, which
                conn.execute("delete from intermediate.int_events_attributed "
                             "where event_id = (select event_id from held)")
                try:
                    with pytest.raises(AssertionError, match="equal_rowcount_int_events_attributed"):
                        _dbt(tmp, *grain_test)  # no interval: every row
                    if checked_daily:
                        with pytest.raises(AssertionError, match="equal_rowcount_int_events_attributed"):
                            _dbt(tmp, *grain_test, start=day)
                    else:
                        _dbt(tmp, *grain_test, start=day)
                finally:
                    conn.execute("insert into intermediate.int_events_attributed select * from held")
                    conn.execute("drop table held")
        finally:
            conn.execute("update staging.stg_analytics__events set _written_at = _written_at + interval '1 day' "
                         "where event_date < %s", [END])
    _dbt(tmp, *grain_test)
    _dbt(tmp, *grain_test, start=day)


def test_a_daily_runs_data_tests_check_the_rows_it_recomputed_and_a_full_test_every_row(built):
    """macros/tests_scope.sql: with an interval (a daily run) the data tests of the dense daily tables see only the
    recomputed days, those of the staged events only the last write; with none they see every row. A null on a
    recomputed day (or in the last write) fails the test, one on an older day only the unscoped test."""
    admin, _, tmp = built
    day = INTERVAL_END - timedelta(days=1)
    rule_hits = ["test", "--select", "int_contact_rule_hits_daily,test_name:not_null_columns"]
    events = ["test", "--select", "stg_analytics__events,test_name:not_null_columns"]
    last_write = "(select max(_written_at) from staging.stg_analytics__events)"
    nulled = [  # (table, its key, the column nulled, which row, does the daily run's test check that row?)
        ("int_contact_rule_hits_daily", "(contact_id, score_date, rule_id)", "kind", f"score_date = '{END}'", True),
        ("int_contact_rule_hits_daily", "(contact_id, score_date, rule_id)", "kind",
         f"score_date = '{END - timedelta(days=20)}'", False),
        ("stg_analytics__events", "event_id", "event_type", f"_written_at = {last_write}", True),
        ("stg_analytics__events", "event_id", "event_type", f"_written_at < {last_write}", False),
    ]
    schema = {"int_contact_rule_hits_daily": "intermediate", "stg_analytics__events": "staging"}
    with psycopg.connect(admin, autocommit=True) as conn:
        # the build wrote every event at once: an older write, for the last case
        conn.execute("update staging.stg_analytics__events set _written_at = _written_at - interval '1 day' "
                     "where event_date < %s", [END])
        try:
            for name, key, column, which, checked_daily in nulled:
                table = f"{schema[name]}.{name}"
                row = conn.execute(f"select {key}::text, {column} from {table} where {which} limit 1").fetchone()
                assert row is not None, (table, which)
                conn.execute(f"update {table} set {column} = null where {key}::text = %s", [row[0]])
                args = rule_hits if name == "int_contact_rule_hits_daily" else events
                try:
                    with pytest.raises(AssertionError, match=name):
                        _dbt(tmp, *args)  # no interval: every row
                    if checked_daily:
                        with pytest.raises(AssertionError, match=name):
                            _dbt(tmp, *args, start=day)
                    else:
                        _dbt(tmp, *args, start=day)
                finally:
                    conn.execute(f"update {table} set {column} = %s where {key}::text = %s", [row[1], row[0]])
        finally:
            conn.execute("update staging.stg_analytics__events set _written_at = _written_at + interval '1 day' "
                         "where event_date < %s", [END])
    _dbt(tmp, *rule_hits, start=day)
    _dbt(tmp, *events, start=day)


def test_a_daily_run_keeps_exactly_the_inputs_it_applied(built):
    """macros/change_logs.sql, applied_inputs_*: a daily run writes only the applied inputs that differ. A contact's
    changed email replaces its one row in stitching's `__applied` (the old row gone, no copy), and undoing the change
    brings the old row back; every other row stays, so the table's size does not move."""
    admin, _, tmp = built
    day = INTERVAL_END - timedelta(days=1)
    applied = "intermediate.int_identities_stitched__applied"
    with_email = _rows(admin, "select record_id from raw.crm_contacts"
                              " where record -> 'properties' ->> 'email' like '%%@%%' order by record_id limit 1")
    contact = with_email[0]["record_id"]

    def rows_of_contact() -> list[str]:
        return [r["value"] for r in _rows(admin, f"select value from {applied} where kind = 'contact' and key = %s",
                                          [contact])]

    def size() -> int:
        return _rows(admin, f"select count(*) as n from {applied}")[0]["n"]

    _dbt(tmp, "run", "--select", "int_identities_stitched", start=day)
    before, held = rows_of_contact(), size()
    assert len(before) == 1
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute("create table raw.test_applied_backup as select * from raw.crm_contacts where record_id = %s",
                     [contact])
        conn.execute("update raw.crm_contacts set record = jsonb_set(record, '{properties,email}', "
                     "'\"someone.new@example.org\"') where record_id = %s", [contact])
        try:
            _dbt(tmp, "run", "--select", "int_identities_stitched", start=day)
            changed = rows_of_contact()
            assert len(changed) == 1 and "someone.new@example.org" in changed[0] and changed != before
            assert size() == held
        finally:
            conn.execute("delete from raw.crm_contacts where record_id = %s", [contact])
            conn.execute("insert into raw.crm_contacts select * from raw.test_applied_backup")
            conn.execute("drop table raw.test_applied_backup")
    _dbt(tmp, "run", "--select", "int_identities_stitched", start=day)
    assert rows_of_contact() == before and size() == held


def test_dense_daily_tables_keep_later_inserts_out_of_the_full_builds_packed_pages(built):
    """Built whole, each dense daily table takes fillfactor 90 for later inserts (macros/contact_changes.sql,
    dense_rows_record), so a daily run's rows fill the pages the previous run's days freed rather than the few
    bytes left in every packed page."""
    admin, _, _ = built
    options = {r["relname"]: r["reloptions"] for r in _rows(admin, """
        select relname, reloptions from pg_class
        where relname in ('int_contact_features_daily', 'int_contact_rule_hits_daily', 'int_contact_scores_daily',
                          'fct_contact_scores_daily') and relkind = 'r'""")}
    assert options == dict.fromkeys(options, ["fillfactor=90"]) and len(options) == 4


def test_no_email_or_phone_in_any_mart(built):
    admin, sample, _ = built
    emails = set()
    with gzip.open(sample / "crm" / "contacts.jsonl.gz", "rt") as fh:
        for line in fh:
            props = json.loads(line)["properties"]
            emails.add((props.get("email") or "").lower())
            emails.add(props.get("phone") or "")
    emails.discard("")
    email_re = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
    phone_re = re.compile(r"\+\d[\d ()-]{7,}\d")
    tables = [r["table_name"] for r in _rows(admin, "select table_name from information_schema.tables "
                                                    "where table_schema = 'marts'")]
    assert len(tables) >= len(CONTRACTS)
    for table in tables:
        for row in _rows(admin, f'select * from marts."{table}"'):
            for col, value in row.items():
                text = json.dumps(value, default=str) if not isinstance(value, str) else value
                assert not email_re.search(text), f"marts.{table}.{col} holds an email: {text[:80]}"
                assert not phone_re.search(text), f"marts.{table}.{col} holds a phone number: {text[:80]}"
                assert text.lower() not in emails, f"marts.{table}.{col} holds a contact's email/phone"


def test_dbt_docs_generate_and_every_mart_states_its_grain(built):
    admin, _, tmp = built
    _dbt(tmp, "docs", "generate")
    manifest = json.loads((tmp / "target" / "manifest.json").read_text())
    catalog = json.loads((tmp / "target" / "catalog.json").read_text())
    marts = {n["name"]: n for n in manifest["nodes"].values()
             if n["resource_type"] == "model" and n["schema"] == "marts"}
    assert set(CONTRACTS) <= set(marts)
    for name, node in marts.items():
        assert re.search(r"\bone row per\b", node["description"], re.IGNORECASE), f"{name} does not state its grain"
        assert node["unique_id"] in catalog["nodes"], f"{name} is missing from the docs catalog"
    # the docs site's front page defines the terms
    overview = manifest["docs"]["doc.handoff.__overview__"]["block_contents"]
    for term in ("**MQL**", "**SQL**", "**Lag**", "**Censoring**"):
        assert term in overview


def _same_rate(rate, num: int, den: int) -> bool:
    """numeric division in Postgres keeps 16+ significant decimals: equal to the exact fraction to that precision"""
    return abs(Fraction(rate) - Fraction(num, den)) < Fraction(1, 10**15)


def _month(ts: datetime) -> date:
    return ts.astimezone(UTC).date().replace(day=1)


def _add_months(d: date, n: int) -> date:
    y, m = divmod(d.month - 1 + n, 12)
    return date(d.year + y, m + 1, 1)


def _midnight(d: date) -> datetime:
    return datetime(d.year, d.month, d.day, tzinfo=UTC)


def _contacts_by_segment(admin: str) -> dict[tuple[str, str], list[dict]]:
    seg: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for c in _rows(admin, "select * from marts.dim_contacts"):
        seg[("all", "all")].append(c)
        for col in SEGMENT_COLUMNS:
            seg[(col, c[col] if c[col] is not None else "(none)")].append(c)
    return seg


def test_cohort_conversion_equals_an_independent_recomputation(built):
    admin, _, _ = built
    max_k = 6
    expected = {}
    for (stype, sval), members in _contacts_by_segment(admin).items():
        cohorts: dict[date, list[dict]] = defaultdict(list)
        for c in members:
            if c["mql_at"] is not None and c["mql_at"] < INTERVAL_END:
                cohorts[_month(c["mql_at"])].append(c)
        for period, cs in cohorts.items():
            for k in range(max_k + 1):
                if _midnight(_add_months(period, k)) >= INTERVAL_END:
                    break  # that period has not begun by the interval end: no row
                end = _midnight(_add_months(period, k + 1))
                sqls = sum(1 for c in cs if c["sql_at"] is not None and c["sql_at"] < min(end, INTERVAL_END))
                expected[(period, stype, sval, k)] = (len(cs), sqls, end <= INTERVAL_END)
            days = [(c["sql_at"] - c["mql_at"]).total_seconds() / 86400 for c in cs
                    if c["sql_at"] is not None and c["sql_at"] < INTERVAL_END]
            expected[(period, stype, sval, "median")] = round(statistics.median(days), 2) if days else None
    actual = _rows(admin, "select * from marts.mql_sql_conversion_cohorts")
    assert len(actual) == sum(1 for k in expected if k[3] != "median")
    for r in actual:
        key = (r["cohort_period"], r["segment_type"], r["segment_value"], r["months_since_mql"])
        mqls, sqls, complete = expected[key]
        assert (r["mqls"], r["sqls_cumulative"], r["is_complete"]) == (mqls, sqls, complete), key
        assert _same_rate(r["conversion_rate"], sqls, mqls), key
        median = expected[key[:3] + ("median",)]
        assert (None if r["median_days_mql_to_sql"] is None else float(r["median_days_mql_to_sql"])) == (
            None if median is None else pytest.approx(median, abs=0.006)), key


STAGE_ORDER = ("lead", "mql", "sql", "opportunity", "customer", "disqualified", "recycled")  # funnel order: ties


def _stays_from_stages(admin: str) -> dict[tuple[str, str], dict]:
    """fct_stage_durations recomputed from int_contact_stages_assigned: each contact's stages reached before the
    interval end, sorted by time then funnel order; a stage is left at the next one's time, else still running."""
    stays = {}
    for c in _rows(admin, "select * from intermediate.int_contact_stages_assigned"):
        reached = sorted(((c[f"{st}_at"], i, st) for i, st in enumerate(STAGE_ORDER)
                          if c[f"{st}_at"] is not None and c[f"{st}_at"] < INTERVAL_END))
        for (at, _, st), nxt in zip(reached, [*reached[1:], None], strict=True):
            end = nxt[0] if nxt else INTERVAL_END
            stays[(c["contact_id"], st)] = {
                "entered_at": at, "exited_at": nxt and nxt[0], "next_stage": nxt and nxt[2],
                "days_in_stage": (end - at).total_seconds() / 86400, "is_current": nxt is None,
                "is_inferred": bool(c.get(f"{st}_inferred"))}
    return stays


def test_stage_durations_equal_an_independent_recomputation(built):
    admin, _, _ = built
    expected = _stays_from_stages(admin)
    actual = {(r["contact_id"], r["stage"]): r for r in _rows(admin, "select * from marts.fct_stage_durations")}
    assert set(actual) == set(expected)
    for key, want in expected.items():
        got = actual[key]
        assert float(got["days_in_stage"]) == pytest.approx(want.pop("days_in_stage"), abs=1e-6), key
        assert {k: got[k] for k in want} == want, key
    # the sample has finished and running stays, and a tie (two stages at one instant) that the funnel order breaks
    assert any(w["is_current"] for w in expected.values()) and not all(w["is_current"] for w in expected.values())
    assert any(w["exited_at"] == w["entered_at"] for w in expected.values())

    # the BI mart's `all` rows: medians over the same rows, Python's statistics.median
    by_stage = defaultdict(list)
    for (_, st), w in expected.items():
        by_stage[st].append((w["is_current"], w["is_inferred"], (w["exited_at"] or INTERVAL_END) - w["entered_at"]))
    mart = {r["stage"]: r for r in _rows(admin, "select * from marts.stage_durations_by_segment "
                                                "where segment_type = 'all'")}
    assert set(mart) == set(by_stage)

    def median(days):
        return round(statistics.median(days), 2) if days else None

    def p75(days):
        return round(statistics.quantiles(days, n=4, method="inclusive")[2], 2) if len(days) > 1 else median(days)

    for st, stays in by_stage.items():
        left = [d.total_seconds() / 86400 for cur, inf, d in stays if not cur and not inf]
        running = [d.total_seconds() / 86400 for cur, inf, d in stays if cur and not inf]
        r = mart[st]
        assert (r["contacts_exited"], r["contacts_current"], r["contacts_inferred"]) == (
            len(left), len(running), sum(1 for _, inf, _ in stays if inf)), st
        for col, want in (("median_days_in_stage", median(left)), ("p75_days_in_stage", p75(left)),
                          ("median_days_current", median(running))):
            assert (None if r[col] is None else float(r[col])) == (
                None if want is None else pytest.approx(want, abs=0.006)), (st, col)
    # every segment type partitions the same stays
    totals = _rows(admin, "select segment_type, stage, sum(contacts_exited + contacts_current + contacts_inferred) "
                          "as n from marts.stage_durations_by_segment group by 1, 2")
    assert {(t["segment_type"], t["stage"], t["n"]) for t in totals} == {
        (stype, st, len(by_stage[st])) for stype in ("all", *SEGMENT_COLUMNS) for st in by_stage}


def test_lagged_conversion_equals_an_independent_recomputation(built):
    admin, _, _ = built
    lags = (0, 1, 2, 3)
    actual = {(r["period"], r["segment_type"], r["segment_value"], r["lag_periods"]): r
              for r in _rows(admin, "select * from marts.mql_sql_lagged_conversion")}
    checked = 0
    segments = _contacts_by_segment(admin)
    # one period spine for all segments: from the first MQL or SQL month of any contact to the interval end
    first = min(_month(ts) for c in segments[("all", "all")] for ts in (c["mql_at"], c["sql_at"])
                if ts is not None and ts < INTERVAL_END)
    for (stype, sval), members in segments.items():
        mqls = defaultdict(int)
        sqls = defaultdict(int)
        for c in members:
            if c["mql_at"] is not None and c["mql_at"] < INTERVAL_END:
                mqls[_month(c["mql_at"])] += 1
            if c["sql_at"] is not None and c["sql_at"] < INTERVAL_END:
                sqls[_month(c["sql_at"])] += 1
        if not mqls and not sqls:
            continue
        period = first
        while period <= END.replace(day=1):
            for lag in lags:
                r = actual[(period, stype, sval, lag)]
                m = mqls.get(_add_months(period, -lag), 0)
                assert (r["sqls"], r["mqls"]) == (sqls.get(period, 0), m), (period, stype, sval, lag)
                assert (r["rate"] is None) if m == 0 else _same_rate(r["rate"], sqls.get(period, 0), m)
                checked += 1
            period = _add_months(period, 1)
    assert checked == len(actual)


def test_rule_stages_match_the_days_the_sample_planted(built):
    """The sample plants each MQL/SQL on a day any reasonable reading of config/funnel.yml finds."""
    admin, sample, _ = built
    with gzip.open(sample / "ground_truth_contacts.csv.gz", "rt") as fh:
        truth = {r["contact_id"]: r for r in csv.DictReader(fh)}
    dim = {c["contact_id"]: c for c in _rows(admin, "select * from marts.dim_contacts")}
    wrong = []
    for cid, t in truth.items():
        c = dim[cid]
        planted_mql = t["planted_mql_at"][:10] or None
        planted_sql = t["planted_sql_at"][:10] or None
        got_mql = c["mql_at"].date().isoformat() if c["mql_at"] else None
        got_sql = c["sql_at"].date().isoformat() if c["sql_at"] else None
        if planted_mql and got_mql != planted_mql:
            wrong.append((cid, "mql", planted_mql, got_mql))
        if not planted_mql and got_mql and not c["mql_inferred"]:
            wrong.append((cid, "unplanted mql", None, got_mql))
        if planted_sql and got_sql != planted_sql:
            wrong.append((cid, "sql", planted_sql, got_sql))
        if not planted_sql and got_sql and not c["sql_inferred"]:
            wrong.append((cid, "unplanted sql", None, got_sql))
    assert wrong == []
    assert sum(1 for t in truth.values() if t["planted_mql_at"]) > 100


def test_channel_conversion_matches_the_sample_and_ranks_like_the_planted_propensities(built):
    admin, sample, _ = built
    truth = json.loads((sample / "ground_truth.json").read_text())
    planted = truth["channel_order"]
    # 1. per channel, our rule-based MQLs and their SQLs are exactly what the sample realized
    measured = {r["channel"]: (r["mqls"], r["sqls"]) for r in _rows(admin, """
        select original_source as channel, count(*) as mqls, count(sql_at) as sqls
        from marts.dim_contacts
        where mql_at is not null and not mql_inferred
        group by 1""")}
    realized = {ch: (v["mqls"], v["sqls_within_window"]) for ch, v in truth["realized"]["per_channel"].items()}
    assert measured == realized
    # 2. the ranking by conversion of complete cohorts follows the planted propensities. The cohorts of an
    # 800-contact sample hold 15-35 MQLs per channel, so neighbours may swap: rank correlation, and the planted
    # top three convert better than the planted bottom three.
    rows = _rows(admin, """
        select segment_value as channel, sum(sqls_cumulative) as sqls, sum(mqls) as mqls
        from marts.mql_sql_conversion_cohorts
        where segment_type = 'original_source' and is_complete and months_since_mql = 1
        group by 1""")
    cohort = {r["channel"]: (r["sqls"], r["mqls"]) for r in rows if r["channel"] in planted}
    assert set(cohort) == set(planted)
    ranked = sorted(planted, key=lambda ch: -Fraction(*cohort[ch]))
    n = len(planted)
    spearman = 1 - 6 * sum((ranked.index(ch) - planted.index(ch)) ** 2 for ch in planted) / (n * (n * n - 1))
    assert spearman >= 0.6, (ranked, planted)

    def pooled(chs):
        return Fraction(sum(cohort[c][0] for c in chs), sum(cohort[c][1] for c in chs))

    assert pooled(planted[:3]) > pooled(planted[-3:]) * 3 / 2, (ranked, planted)


def test_rule_lift_equals_an_independent_recomputation_with_intervals_from_their_formulas(built):
    """marts.funnel_rule_lift from dim_contacts and the daily scores' rules in plain Python (tests/dbt/rule_lift.py);
    at 800 × 90 only September's cohort has a window that ended (and none of its MQLs reached an opportunity by
    then: no deal came within two months), so every lift is null and the checks are the counts and Wilson bounds;
    the 5,000-contact soak test (test_channel_ranking.py) checks lifts and their intervals."""
    admin, _, _ = built
    rows = rule_lift.assert_mart_matches(admin, INTERVAL_END)
    split = [r for r in rows.values() if r["contacts_with"] > 5 and r["contacts_without"] > 5]
    assert len(split) >= 5 and {r["contacts"] for r in rows.values()} == {split[0]["contacts"]}


def test_explain_tells_a_contacts_stages_with_evidence_its_score_history_and_what_it_lacks(built, wh_target,
                                                                                              monkeypatch, capsys):
    from handoff import cli, explain, warehouse  # noqa: PLC0415

    admin, sample, _ = built
    definition = funnel.load()
    mql = _rows(admin, """select * from marts.dim_contacts where mql_evidence_source = 'rules' and sql_at is null
                          and not is_disqualified order by contact_id limit 1""")[0]
    lead = _rows(admin, """select * from marts.dim_contacts where mql_at is null and not is_disqualified
                           order by current_score desc, contact_id limit 1""")[0]
    with psycopg.connect(wh_target.conninfo("transformer")) as conn:
        report = explain.explain(conn, mql["crm_contact_id"])
        # 1. the MQL: its day, the rules of that day's score with their values and points, the definition version
        stage = next(s for s in report["stages"] if s["stage"] == "mql")
        day = _rows(admin, "select * from marts.fct_contact_scores_daily where contact_id = %s and score_date = %s",
                    (mql["contact_id"], mql["mql_at"].date()))[0]
        assert (stage["transitioned_at"], stage["evidence_source"]) == (mql["mql_at"], "rules")
        assert [r["rule_id"] for r in stage["rules"]] == day["rule_ids"]
        assert {r["rule_id"]: (r["value"], r["points"]) for r in stage["rules"]} == {
            r: (day["rule_values"][r], day["rule_points"][r]) for r in day["rule_ids"]}
        assert {s["definition_version"] for s in report["stages"]} == {definition.version}
        # 2. the score history keeps the first and last day and every day a rule started or stopped scoring
        days = _rows(admin, "select * from marts.fct_contact_scores_daily where contact_id = %s order by score_date",
                     (mql["contact_id"],))
        kept = {d["score_date"] for d in report["score_history"]}
        changed = {b["score_date"] for a, b in zip(days, days[1:], strict=False)
                   if set(a["rule_ids"]) != set(b["rule_ids"])}
        assert {days[0]["score_date"], days[-1]["score_date"]} | changed <= kept and report["score_days"] == len(days)
        assert report["lacks"]["next_stage"] == "sql"
        # 3. a lead: what it lacks is the threshold minus its score, and the minimum fit minus its fit score
        lacking = explain.explain(conn, lead["contact_id"])["lacks"]
        assert lacking["next_stage"] == "mql"
        assert lacking["score_short"] == max(0, Decimal(str(definition.mql_score_threshold)) - lead["current_score"])
        assert lacking["fit_short"] == max(0, Decimal(str(definition.mql_min_fit_score)) - lead["current_fit_score"])
        # 4. by email (hashed here as the marts hash it), and an unknown contact is a clear error
        with gzip.open(sample / "crm" / "contacts.jsonl.gz", "rt") as fh:
            email = next(json.loads(line)["properties"]["email"] for line in fh
                         if json.loads(line)["id"] == mql["crm_contact_id"])
        assert explain.explain(conn, f"  {email.upper()} ")["contact_id"] == mql["contact_id"]
        with pytest.raises(explain.ExplainError, match="no contact 'nobody@example.com'"):
            explain.explain(conn, "nobody@example.com")
    # 5. the command: --json for machines, an unknown contact exits with the message
    monkeypatch.setattr(warehouse, "target", lambda: wh_target)
    assert cli.main(["explain", mql["crm_contact_id"], "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["stages"][1]["stage"] == "mql"
    with pytest.raises(SystemExit, match="handoff: error: no contact '0'"):
        cli.main(["explain", "0"])


# models that run long enough (at 800 × 90) to be caught mid-statement: tables, and the incremental marts
KILLABLE = ("int_identities_stitched", "int_contact_features_daily", "int_contact_rule_hits_daily",
            "int_contact_scores_daily", "fct_contact_scores_daily", "fct_contact_engagement_daily",
            "int_contact_rule_stages", "mql_sql_conversion_cohorts")


def _kill_dbt_while(admin: str, tmp: Path, model: str) -> None:
    """Start ``dbt run`` and SIGKILL it (its whole process group) while PostgreSQL runs ``model``'s statement."""
    env = {**os.environ, **dbt_runner.dbt_env(), "HANDOFF_DBT_DBNAME": _DBNAME[0],
           "DBT_TARGET_PATH": str(tmp / "target"), "DBT_LOG_PATH": str(tmp / "logs"),
           **dbt_runner.interval_env(None, INTERVAL_END)}
    proc = subprocess.Popen([dbt_runner.dbt_executable(), "run", "--exclude", "resource_type:seed"],
                            cwd=dbt_runner.PROJECT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        wait_until(lambda: proc.poll() is not None or _rows(admin, (
            "select count(*) as n from pg_stat_activity where datname = %s and state = 'active'"
            " and pid <> pg_backend_pid() and query like %s"), [_DBNAME[0], f"%{model}%"])[0]["n"],
            f"dbt to start on {model}", timeout=120)
        assert proc.poll() is None, f"dbt ended before it reached {model}"
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def _kill_trials(built, trials: int) -> None:
    admin, _, tmp = built
    clean = _mart_rows(admin)
    seed = int(os.environ.get("HANDOFF_KILL_SEED", random.randrange(10**6)))
    for model in random.Random(seed).sample(KILLABLE, trials):
        _kill_dbt_while(admin, tmp, model)
        _dbt(tmp, "run", "--exclude", "resource_type:seed")
        assert _mart_rows(admin) == clean, f"marts differ after a kill during {model} (HANDOFF_KILL_SEED={seed})"


def test_dbt_killed_mid_model_then_rerun_equals_the_clean_build(built):
    """SIGKILL dbt while a model's statement runs (a model picked at random, the seed in any failure): PostgreSQL
    rolls the statement back, and a plain rerun ends with marts equal to the clean build."""
    _kill_trials(built, 1)


@pytest.mark.soak
def test_dbt_killed_mid_model_five_times_at_random_models(built):
    _kill_trials(built, 5)


def _late(event: dict) -> bool:
    """The events held back to arrive three days late: a tenth of those received on the day they happened (the
    sample's own late sessions already arrive a day after), chosen by a hash of the message id."""
    return (event["timestamp"][:10] == event["receivedAt"][:10]
            and int(hashlib.sha256(event["messageId"].encode()).hexdigest()[:8], 16) % 10 == 0)


@contextlib.contextmanager
def _gone_from_the_crm(admin: str, contact_id: str):
    """The contact's raw CRM rows held aside (the contact deleted in the CRM) while the block runs, then put back."""
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute("drop table if exists raw.crm_contacts_held")
        conn.execute("create table raw.crm_contacts_held as select * from raw.crm_contacts where record_id = %s",
                     [contact_id])
        conn.execute("delete from raw.crm_contacts where record_id = %s", [contact_id])
    try:
        yield
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute("insert into raw.crm_contacts select * from raw.crm_contacts_held")
            conn.execute("drop table raw.crm_contacts_held")


def _mart_rows(admin: str) -> dict[str, Counter]:
    """Every mart as a multiset of rows (each row rendered as text), for a zero-differing-rows comparison."""
    tables = [r["table_name"] for r in _rows(admin, "select table_name from information_schema.tables "
                                                    "where table_schema = 'marts' and table_type = 'BASE TABLE'")]
    return {t: Counter(json.dumps(r, default=str, sort_keys=True) for r in _rows(admin, f'select * from marts."{t}"'))
            for t in tables}


def _engagement_on(admin: str, day: date) -> int:
    return _rows(admin, "select coalesce(sum(pageviews + sessions + form_submissions + downloads + email_opens"
                        " + email_clicks + social_interactions), 0) as n from marts.fct_contact_engagement_daily"
                        " where activity_date = %s", [day])[0]["n"]


LOOKBACK = 3  # dbt_project.yml vars.lookback_days
MODELS = ["--exclude", "resource_type:seed", "resource_type:unit_test"]
DAILY = ["--select", "+fct_contact_scores_daily", "+fct_contact_engagement_daily", *MODELS]


def _replay_days(admin: str, sample: Path, tmp: Path, days: int, *, late: bool,
                 skipped: frozenset = frozenset()) -> dict:
    """Rebuild the last ``days`` days one daily run at a time, ending with every mart built as of END.

    late=True  -- daily runs as they happen: each day's files arrive that day, except a tenth of the events of
                  the days in reach, which arrive three days late (the lookback);
    late=False -- a backfill: every file is already there, and the days run in order.
    skipped    -- days whose run does not happen (an outage: the DAG does not catch up); their files still arrive.
    Before the first day: the CRM snapshot and the history, then a full refresh up to the first day. The CRM
    snapshot is loaded once, up front: fit attributes are the contact's current ones (README, known gaps), so a
    CRM change would make an old daily row differ from a refresh by design, not by bug.
    """
    first = END - timedelta(days=days - 1)
    folders = {date.fromisoformat(p.name): p.name for p in (sample / "analytics").iterdir() if p.is_dir()}
    late_days = {d for d in folders if late and first - timedelta(days=LOOKBACK) <= d <= END - timedelta(days=LOOKBACK)}

    def on_time(day: date):
        return lambda ev: not (day in late_days and _late(ev))

    truncate_raw(admin)
    loaded = fill(admin, sample, days=[])["analytics_events"]  # the CRM snapshot
    for d in sorted(d for d in folders if d < first or not late):
        loaded += fill(admin, sample, crm=False, days=[folders[d]], keep=on_time(d))["analytics_events"]
    _dbt(tmp, "run", *DAILY, "--full-refresh", end=_midnight(first))
    assert _rows(admin, "select max(score_date) as d from marts.fct_contact_scores_daily")[0]["d"] == (
        first - timedelta(days=1))

    late_loaded = corrected = 0
    day = first
    while day <= END:
        if late:
            loaded += fill(admin, sample, crm=False, days=[folders[day]], keep=on_time(day))["analytics_events"]
        three_days_ago = day - timedelta(days=LOOKBACK)
        if three_days_ago in late_days:
            n = fill(admin, sample, crm=False, days=[folders[three_days_ago]], keep=_late)["analytics_events"]
            loaded, late_loaded = loaded + n, late_loaded + n
        if day not in skipped:
            before = _engagement_on(admin, three_days_ago)
            last = day == END  # the last day runs the whole project: every mart, incremental where it is
            _dbt(tmp, "run", *(MODELS if last else DAILY), start=_midnight(day),
                 end=_midnight(day) + timedelta(days=1))
            corrected += _engagement_on(admin, three_days_ago) > before
        day += timedelta(days=1)
    return {"loaded": loaded, "late_loaded": late_loaded, "corrected": corrected, "marts": _mart_rows(admin)}


def _assert_same_marts(got: dict[str, Counter], want: dict[str, Counter]) -> None:
    """Zero differing rows in every mart; on failure, a few rows from each side of the difference."""
    assert set(got) == set(want)
    assert len(want) >= len(CONTRACTS)
    only_got = {t: got[t] - want[t] for t in want}
    only_want = {t: want[t] - got[t] for t in want}
    differing = {t: only_got[t].total() + only_want[t].total() for t in want}
    examples = {t: (sorted(only_got[t])[:3], sorted(only_want[t])[:3]) for t in want if differing[t]}
    assert differing == dict.fromkeys(want, 0), examples
    assert sum(want["fct_contact_scores_daily"].values()) > 10_000


@pytest.mark.soak  # 1.5 to 2 minutes each: make test-soak (keeps `make test` under 10 min)
def test_two_weeks_of_daily_runs_with_late_events_equal_one_full_refresh(built):
    """Day by day over the last two weeks, a tenth of each day's events arriving three days late (the lookback),
    with a five-day outage in the middle (no runs: the DAG does not catch up, so the next run fills the gap), then
    the marts equal one full refresh over the same data: zero differing rows in every mart."""
    admin, sample, tmp = built
    total = _rows(admin, "select count(*) as n from raw.analytics_events")[0]["n"]  # the whole sample
    outage = frozenset(END - timedelta(days=d) for d in range(4, 9))  # longer than the lookback
    daily = _replay_days(admin, sample, tmp, 14, late=True, skipped=outage)
    # counts reconcile: every event of the sample was loaded once, a tenth of the late days' events late
    assert daily["loaded"] == total
    assert daily["late_loaded"] > 100
    assert daily["corrected"] >= 6, "late events should have corrected the engagement of the day they happened"

    _dbt(tmp, "run", *MODELS, "--full-refresh", start=_midnight(END))
    _assert_same_marts(daily["marts"], _mart_rows(admin))


EVENT_LEVEL = ["int_identities_stitched", "int_events_attributed", "int_sessions_sessionized",
               "int_contact_engagement_facts", "int_contact_content_days", "int_contact_web_touchpoints",
               "int_contact_touchpoints"]


def _event_level_rows(admin: str) -> dict[str, Counter]:
    """The incremental event-level tables as multisets of rows, without the run stamp (_written_at)."""
    return {t: Counter(json.dumps({k: v for k, v in r.items() if k != "_written_at"}, default=str, sort_keys=True)
                       for r in _rows(admin, f"select * from intermediate.{t}"))
            for t in EVENT_LEVEL}


@pytest.mark.soak  # 1.5 to 2 minutes each: make test-soak (keeps `make test` under 10 min)
def test_a_crm_contact_going_and_coming_back_is_applied_incrementally_as_a_full_refresh_would(built):
    """The event-level models recompute only the visitors whose attribution changed (macros/visitor_changes.sql).
    A contact with stitched devices leaves the CRM, then comes back: after each, one incremental daily run leaves
    attribution, sessions, facts and touchpoints equal to a full refresh (zero differing rows), and rewrote only
    that contact's events (its devices lose their identity, and get it back)."""
    admin, _, tmp = built
    day = dict(start=_midnight(END), end=_midnight(END) + timedelta(days=1))
    _dbt(tmp, "run", *MODELS, **day)
    contact = _rows(admin, "select contact_id, count(*) as devices from intermediate.int_identities_stitched "
                           "group by contact_id order by count(*) desc, contact_id limit 1")[0]
    assert contact["devices"] >= 1
    cid = contact["contact_id"]
    events_of = ("select count(*) as n from intermediate.int_events_attributed where contact_id = %s")
    owned = _rows(admin, events_of, [cid])[0]["n"]
    total = _rows(admin, "select count(*) as n from intermediate.int_events_attributed")[0]["n"]
    assert 0 < owned < total / 20

    def rewritten() -> int:
        return _rows(admin, "select count(*) as n from intermediate.int_events_attributed "
                            "where _written_at = (select max(_written_at) from intermediate.int_events_attributed)"
                     )[0]["n"]

    with _gone_from_the_crm(admin, cid):
        _dbt(tmp, "run", *MODELS, **day)
        assert _rows(admin, events_of, [cid])[0]["n"] == 0
        assert owned <= rewritten() < total / 10  # the contact's events, not everyone's
        gone = _event_level_rows(admin)
        _dbt(tmp, "run", *MODELS, "--full-refresh", start=_midnight(END))
        assert _event_level_rows(admin) == gone
    _dbt(tmp, "run", *MODELS, **day)
    assert _rows(admin, events_of, [cid])[0]["n"] == owned
    assert owned <= rewritten() < total / 10
    back = _event_level_rows(admin)
    _dbt(tmp, "run", *MODELS, "--full-refresh", start=_midnight(END))
    assert _event_level_rows(admin) == back


def _insert_page_views(admin: str, template: dict, user_id: str, times: list[datetime]) -> None:
    """Late page views of ``user_id`` at ``times`` in a new load batch, each a copy of ``template`` (a raw page
    view record) without its device, with its own message id and timestamps, received now."""
    batch, now = uuid.uuid4(), datetime.now(UTC)
    with psycopg.connect(admin) as conn, conn.cursor() as cur:
        for i, at in enumerate(times, start=1):
            rec = {k: v for k, v in template.items() if k != "anonymousId"}  # the contact's own, no device
            rec |= {"userId": user_id, "messageId": f"ajs-late-{batch.hex[:8]}-{i}",
                    "timestamp": at.isoformat().replace("+00:00", "Z"), "sentAt": now.isoformat(),
                    "receivedAt": now.isoformat()}
            cur.execute("insert into raw.analytics_events (_batch_id, _loaded_at, _source, _line, message_id,"
                        " event_type, event_name, anonymous_id, user_id, event_at, received_at, record)"
                        " values (%s, %s, 'tests/late.jsonl', %s, %s, 'page', null, %s, %s, %s, %s, %s)",
                        [batch, now, i, rec["messageId"], None, user_id, at, now, json.dumps(rec)])
        conn.commit()


def test_late_page_views_resume_sessions_where_they_change_as_a_full_refresh_would(built):
    """Sessions resume at the last session that starts before a visitor's earliest changed event; what is kept
    before it carries the numbering and the flags (macros/visitor_changes.sql, session_resume_points).
    Late page views close the gap between two of one contact's sessions (they become one; the later ones are
    renumbered) and land before another contact's first session (re-sessionized whole). After one incremental
    run the event-level tables equal a full refresh, and the first contact's earlier sessions and facts were kept,
    not rewritten."""
    admin, _, tmp = built
    day = dict(start=_midnight(END), end=_midnight(END) + timedelta(days=1))
    _dbt(tmp, "run", *MODELS, **day)
    # the contact whose sessions k and k + 1 (k >= 2) are closest: views every <= 25 min bridge them
    bridged = _rows(admin, """
        select visitor_key, contact_id, session_index, ended_at, next_started_at from (
            select *, lead(started_at) over by_visitor as next_started_at,
                count(*) over (partition by visitor_key) as sessions
            from intermediate.int_sessions_sessionized where contact_id is not null
            window by_visitor as (partition by visitor_key order by started_at)) as s
        where session_index >= 2 and sessions >= 4 and next_started_at is not null
        order by next_started_at - ended_at, visitor_key limit 1""")[0]
    gap = bridged["next_started_at"] - bridged["ended_at"]
    steps = -(-gap // timedelta(minutes=25))  # ceil: every step under the 30-minute inactivity gap
    assert steps <= 200, gap
    chain = [bridged["ended_at"] + gap * i / steps for i in range(1, steps)]
    # another contact with several sessions: one view three days before its first
    whole = _rows(admin, """
        select contact_id, min(started_at) as first_at, count(*) as sessions
        from intermediate.int_sessions_sessionized where contact_id is not null and contact_id <> %s
        group by contact_id having count(*) >= 3 order by contact_id limit 1""", [bridged["contact_id"]])[0]
    template = _rows(admin, "select record from raw.analytics_events where event_type = 'page' limit 1")[0]["record"]
    sessions_of = "select count(*) as n from intermediate.int_sessions_sessionized where contact_id = %s"
    before = {c: _rows(admin, sessions_of, [c])[0]["n"] for c in (bridged["contact_id"], whole["contact_id"])}

    _insert_page_views(admin, template, bridged["contact_id"], chain)
    _insert_page_views(admin, template, whole["contact_id"], [whole["first_at"] - timedelta(days=3)])
    _dbt(tmp, "run", *MODELS, **day)
    assert _rows(admin, sessions_of, [bridged["contact_id"]])[0]["n"] == before[bridged["contact_id"]] - 1
    assert _rows(admin, sessions_of, [whole["contact_id"]])[0]["n"] == before[whole["contact_id"]] + 1
    # kept: the bridged contact's sessions before session k, and its facts before the first late view
    last_write = "(select max(_written_at) from intermediate.{})"
    kept = _rows(admin, f"""
        select count(*) filter (where _written_at < {last_write.format('int_sessions_sessionized')}) as kept,
            count(*) filter (where session_index < %s) as earlier
        from intermediate.int_sessions_sessionized where contact_id = %s""",
                 [bridged["session_index"], bridged["contact_id"]])[0]
    assert kept["kept"] == kept["earlier"] == bridged["session_index"] - 1
    facts = _rows(admin, f"""
        select count(*) filter (where _written_at < {last_write.format('int_contact_engagement_facts')}) as kept,
            count(*) filter (where occurred_at < %s) as earlier
        from intermediate.int_contact_engagement_facts where contact_id = %s and feature <> 'meetings'""",
                  [chain[0], bridged["contact_id"]])[0]
    assert facts["kept"] == facts["earlier"] > 0
    incremental = _event_level_rows(admin)
    _dbt(tmp, "run", *MODELS, "--full-refresh", start=_midnight(END))
    assert _event_level_rows(admin) == incremental


DENSE = ["intermediate.int_contact_features_daily", "intermediate.int_contact_rule_hits_daily",
         "intermediate.int_contact_scores_daily", "marts.fct_contact_scores_daily"]


def test_a_daily_run_rewrites_the_lookback_days_only_of_the_contacts_whose_inputs_changed(built):
    """macros/contact_changes.sql: a daily run writes every contact's new day, and on the three lookback days only
    the rows of the contacts whose inputs there changed: late page views of one contact two days back (its features,
    rule hits, scores and scores-mart rows), a new persona for another (a fit change: its scores and scores-mart
    rows only). Rows written by the run carry its transaction id (xmin), like every row of the new day. From the
    lookback on, the four tables then equal a full refresh; after it, with the persona put back, the next run
    rewrites only that contact's lookback scores."""
    admin, _, tmp = built
    day = dict(start=_midnight(END), end=_midnight(END) + timedelta(days=1))
    lookback = (END - timedelta(days=LOOKBACK), END - timedelta(days=1))

    def rewritten(table: str) -> set[str]:
        """The contacts whose lookback-day rows the last run wrote (the transaction that wrote the new day)."""
        return {r["contact_id"] for r in _rows(admin, f"""
            select distinct contact_id from {table}
            where score_date between %s and %s
                and xmin::text = (select xmin::text from {table} where score_date = %s limit 1)""", [*lookback, END])}

    def from_lookback() -> dict[str, Counter]:
        return {t: Counter(json.dumps(r, default=str, sort_keys=True)
                           for r in _rows(admin, f"select * from {t} where score_date >= %s", [lookback[0]]))
                for t in DENSE}

    _dbt(tmp, "run", *MODELS, **day)  # nothing changed: no lookback row is rewritten
    assert {t: rewritten(t) for t in DENSE} == dict.fromkeys(DENSE, set())

    # two contacts scored since before the lookback; the second's fit includes its persona
    scored = ("select contact_id from intermediate.int_contact_features_daily where score_date = %s and lead_date < %s"
              " and contact_id in (select contact_id from intermediate.int_contact_fit_rule_hits where rule_id = %s)"
              " order by contact_id limit 2")
    late, student = (r["contact_id"] for r in _rows(admin, scored, [lookback[0], lookback[0], "fit_persona"]))
    template = _rows(admin, "select record from raw.analytics_events where event_type = 'page' limit 1")[0]["record"]
    two_days_back = datetime.combine(END - timedelta(days=2), datetime.min.time(), UTC) + timedelta(hours=10)
    _insert_page_views(admin, template, late, [two_days_back + timedelta(minutes=5 * i) for i in range(3)])
    set_persona = ("update raw.crm_contacts set record = jsonb_set(record, '{properties,persona}', to_jsonb(%s::text))"
                   " where record_id = %s")
    with psycopg.connect(admin, autocommit=True) as conn:
        persona = conn.execute("select distinct record -> 'properties' ->> 'persona' from raw.crm_contacts"
                               " where record_id = %s", [student]).fetchall()
        assert len(persona) == 1 and persona[0][0] != "student"
        conn.execute(set_persona, ["student", student])
    try:
        _dbt(tmp, "run", *MODELS, **day)
        assert {t: rewritten(t) for t in DENSE} == {
            "intermediate.int_contact_features_daily": {late}, "intermediate.int_contact_rule_hits_daily": {late},
            "intermediate.int_contact_scores_daily": {late, student}, "marts.fct_contact_scores_daily": {late, student}}
        as_student = _rows(admin, "select count(*) filter (where 'neg_student' = any(rule_ids)) as n, count(*) as days"
                                  " from intermediate.int_contact_scores_daily where contact_id = %s"
                                  " and score_date >= %s", [student, lookback[0]])[0]
        assert as_student["n"] == as_student["days"] == LOOKBACK + 1
        daily = from_lookback()
        _dbt(tmp, "run", *MODELS, "--full-refresh", start=_midnight(END))
        assert from_lookback() == daily
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(set_persona, [persona[0][0], student])
    # a full refresh logs '*' and moves every watermark past it: the next run rewrites only the persona put back
    _dbt(tmp, "run", *MODELS, **day)
    assert {t: rewritten(t) for t in DENSE} == {
        "intermediate.int_contact_features_daily": set(), "intermediate.int_contact_rule_hits_daily": set(),
        "intermediate.int_contact_scores_daily": {student}, "marts.fct_contact_scores_daily": {student}}


def _engagement_from(admin: str, first: date) -> Counter:
    """The engagement mart's rows from ``first`` on, as a multiset (each row rendered as text)."""
    return Counter(json.dumps(r, default=str, sort_keys=True) for r in _rows(
        admin, "select * from marts.fct_contact_engagement_daily where activity_date >= %s", [first]))


@pytest.mark.soak  # 1.5 to 2 minutes each: make test-soak (keeps `make test` under 10 min)
def test_a_contact_day_that_loses_all_its_facts_leaves_the_engagement_mart_as_a_full_refresh_would(built):
    """fct_contact_engagement_daily recomputes every contact-day from the lookback start L: a contact-day that has
    no fact any more must go, as a full refresh has no row for it. On one daily run, the only facts of a contact's
    lookback day (its meetings) become CANCELED meetings, which are not facts (int_contact_crm_activities), and
    another contact with web activity on the lookback days leaves the CRM. From L on, the engagement mart then
    equals a full refresh (zero differing rows), and neither contact has a row there."""
    admin, _, tmp = built
    day = dict(start=_midnight(END), end=_midnight(END) + timedelta(days=1))
    first = END - timedelta(days=LOOKBACK)
    _dbt(tmp, "run", *MODELS, **day)
    # a lookback day whose only facts are meetings (a day before the new one: it is held already)
    met = _rows(admin, """
        select contact_id, event_date from intermediate.int_contact_engagement_facts
        where event_date between %s and %s
        group by contact_id, event_date having bool_and(feature = 'meetings')
        order by contact_id, event_date limit 1""", [first, END - timedelta(days=1)])
    assert met, "the sample should have a lookback day with meetings only"
    met_id, met_day = met[0]["contact_id"], met[0]["event_date"]
    meetings = [r["activity_id"] for r in _rows(admin, """
        select activity_id from intermediate.int_contact_crm_activities
        where activity_type = 'meeting' and is_held_or_scheduled and contact_id = %s and activity_date = %s""",
                                                  [met_id, met_day])]
    assert meetings
    gone = _rows(admin, """
        select contact_id from marts.fct_contact_engagement_daily
        where activity_date between %s and %s and pageviews > 0 and contact_id <> %s
        group by contact_id order by count(*) desc, contact_id limit 1""", [first, END, met_id])[0]["contact_id"]
    on_lookback = ("select count(*) as n from marts.fct_contact_engagement_daily"
                   " where contact_id = %s and activity_date >= %s")
    assert _rows(admin, on_lookback, [met_id, first])[0]["n"] >= 1
    assert _rows(admin, on_lookback, [gone, first])[0]["n"] >= 1
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute("drop table if exists raw.crm_meetings_held")
        conn.execute("create table raw.crm_meetings_held as select * from raw.crm_meetings"
                     " where record_id = any(%s)", [meetings])
        conn.execute("update raw.crm_meetings set record = jsonb_set(record, '{properties,hs_meeting_outcome}',"
                     " '\"CANCELED\"') where record_id = any(%s)", [meetings])
    try:
        with _gone_from_the_crm(admin, gone):
            _dbt(tmp, "run", *MODELS, **day)
            daily = _engagement_from(admin, first)
            _dbt(tmp, "run", *MODELS, "--full-refresh", start=_midnight(END))
            refreshed = _engagement_from(admin, first)
            differing = (daily - refreshed) + (refreshed - daily)
            assert differing.total() == 0, (met_id, met_day, gone, sorted(
                (json.loads(r)["contact_id"], json.loads(r)["activity_date"], r in daily) for r in differing))
            assert not _rows(admin, "select 1 from marts.fct_contact_engagement_daily"
                                    " where contact_id = %s and activity_date = %s", [met_id, met_day])
            assert _rows(admin, on_lookback, [gone, first])[0]["n"] == 0
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute("delete from raw.crm_meetings where record_id = any(%s)", [meetings])
            conn.execute("insert into raw.crm_meetings select * from raw.crm_meetings_held")
            conn.execute("drop table raw.crm_meetings_held")
    _dbt(tmp, "run", *MODELS, "--full-refresh", start=_midnight(END))


@pytest.mark.soak  # a known gap, recorded: `make test-soak` says when it is fixed (keeps `make test` under 10 min)
@pytest.mark.xfail(strict=True, reason=(
    "a contact gone from the CRM keeps its rows before L in fct_contact_engagement_daily and "
    "fct_contact_scores_daily (16 and 82 rows for the contact picked here; a full refresh has none), and its "
    "int_contact_score_first_days row (a full join with the held table): daily runs delete only from L on "
    "(docs/incremental.md, what the equality does and does not cover)"))
def test_a_contact_gone_from_the_crm_leaves_every_mart_as_a_full_refresh_would(built):
    """A contact with a first MQL day before the lookback leaves the CRM: after one daily run, every mart (and the
    first days) equal a full refresh, with no row of that contact anywhere."""
    admin, _, tmp = built
    day = dict(start=_midnight(END), end=_midnight(END) + timedelta(days=1))
    first = END - timedelta(days=LOOKBACK)
    _dbt(tmp, "run", *MODELS, **day)
    gone = _rows(admin, "select contact_id from intermediate.int_contact_score_first_days"
                        " where first_mql_date < %s order by contact_id limit 1", [first])[0]["contact_id"]
    first_days = "select count(*) as n from intermediate.int_contact_score_first_days where contact_id = %s"
    try:
        with _gone_from_the_crm(admin, gone):
            _dbt(tmp, "run", *MODELS, **day)
            daily, held = _mart_rows(admin), _rows(admin, first_days, [gone])[0]["n"]
            _dbt(tmp, "run", *MODELS, "--full-refresh", start=_midnight(END))
            _assert_same_marts(daily, _mart_rows(admin))
            assert held == _rows(admin, first_days, [gone])[0]["n"] == 0
    finally:
        _dbt(tmp, "run", *MODELS, "--full-refresh", start=_midnight(END))


@pytest.mark.soak
def test_a_30_day_backfill_equals_30_daily_runs(built):
    """Thirty daily runs as they happen (late events included) and a backfill of the same thirty days (every
    file already there) end with the same marts, and both equal one full refresh."""
    admin, sample, tmp = built
    daily = _replay_days(admin, sample, tmp, 30, late=True)
    backfill = _replay_days(admin, sample, tmp, 30, late=False)
    assert backfill["loaded"] == daily["loaded"] and daily["late_loaded"] > 100
    _assert_same_marts(backfill["marts"], daily["marts"])
    _dbt(tmp, "run", *MODELS, "--full-refresh", start=_midnight(END))
    _assert_same_marts(daily["marts"], _mart_rows(admin))
