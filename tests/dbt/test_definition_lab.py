"""The definition lab's backtest (`handoff funnel backtest`) on a hand-made history a person can count.

Five contacts, all created on 2026-01-05, no CRM record of an MQL (so the rules alone flag MQLs), one fit company
(51-200 employees: +15, COMPUTER_SOFTWARE: +10) and one small company that fits nothing:

| contact | company | persona (+10 economic_buyer) | fit | forms on their day (10 points each) | score that day |
| --- | --- | --- | --- | --- | --- |
| A | fit | economic_buyer | 35 | 2 on 2026-02-02 | 55 |
| B | fit | economic_buyer | 35 | 1 on 2026-02-03 | 45 |
| D | fit | practitioner | 25 | 2 on 2026-02-04 | 45 |
| C | fit | practitioner | 25 | 1 on 2026-02-05 | 35 |
| E | small | practitioner | 0 | 2 on 2026-02-06 | 20 |

(a session's web_visit point may add 1 to each; no score moves across 40 or 50 by it). A deal opens for A on
2026-02-20 and for B on 2026-02-25: opportunities. The current definition (threshold 50) flags A; B becomes an MQL
only by inference from its deal. The candidate (threshold 40) also flags B and D: two MQLs added, none dropped.
Precision (flagged MQLs that reached an opportunity ÷ flagged MQLs): current 1/1, candidate 2/3 (A and B; D has
no deal). Coverage (February's two opportunities whose contact was flagged before): current 1/2 (A), candidate 2/2.
The CRM's last change is on 2026-05-31, so the history ends on 2026-06-01 and February's outcome window (the cohort
month plus the headline lag) is over.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest
import yaml
from handoff import dbt_runner, lab, settings
from handoff.lab.backtest import LOCK_KEY, BacktestBusy, report_lines
from rawfill import drop_dbt_relations, truncate_raw

CREATED = "2026-01-05T09:00:00.000Z"
LAST_CHANGE = "2026-05-31T12:00:00.000Z"
COMPANIES = {"901": ("Fitco", "fitco.example", "100", "COMPUTER_SOFTWARE"),
             "902": ("Smallco", "smallco.example", "10", "HOSPITAL_HEALTH_CARE")}
# contact -> (company, persona, forms, day of the forms)
CONTACTS = {"A": ("901", "economic_buyer", 2, "2026-02-02"), "B": ("901", "economic_buyer", 1, "2026-02-03"),
            "D": ("901", "practitioner", 2, "2026-02-04"), "C": ("901", "practitioner", 1, "2026-02-05"),
            "E": ("902", "practitioner", 2, "2026-02-06")}
DEALS = {"A": "2026-02-20T10:00:00.000Z", "B": "2026-02-25T10:00:00.000Z"}
CONTACT_IDS = {name: str(1000 + i) for i, name in enumerate(CONTACTS)}
FEBRUARY = date(2026, 2, 1)


def _company(company_id: str) -> dict:
    name, domain, employees, industry = COMPANIES[company_id]
    return {"id": company_id, "properties": {
        "name": name, "domain": domain, "industry": industry, "numberofemployees": employees,
        "annualrevenue": "1000", "monthly_web_visitors": "100", "web_technologies": "cloudflare",
        "country": "Germany", "createdate": CREATED, "hs_lastmodifieddate": LAST_CHANGE, "hs_object_id": company_id},
        "createdAt": CREATED, "updatedAt": LAST_CHANGE, "archived": False}


def _contact(name: str) -> dict:
    company_id, persona, _, _ = CONTACTS[name]
    contact_id = CONTACT_IDS[name]
    return {"id": contact_id, "properties": {
        "email": f"{name.lower()}@{COMPANIES[company_id][1]}", "firstname": name, "lastname": "Example",
        "jobtitle": "Manager", "persona": persona, "associatedcompanyid": company_id, "lifecyclestage": "lead",
        "hs_lead_status": "NEW", "hs_analytics_source": "ORGANIC_SEARCH", "hs_email_optout": "false",
        "hs_email_bounce": "false", "createdate": CREATED, "lastmodifieddate": LAST_CHANGE,
        "hs_object_id": contact_id}, "createdAt": CREATED, "updatedAt": LAST_CHANGE, "archived": False}


def _deal(name: str, created: str) -> dict:
    deal_id = str(5000 + int(CONTACT_IDS[name]))
    return {"id": deal_id, "properties": {
        "dealname": f"{name} — new business", "pipeline": "default", "dealstage": "appointmentscheduled",
        "amount": "10000", "createdate": created, "closedate": None, "hs_lastmodifieddate": created},
        "createdAt": created, "updatedAt": created, "archived": False,
        "associations": {"contacts": {"results": [{"id": CONTACT_IDS[name], "type": "deal_to_contact"}]}}}


def _form(name: str, day: str, n: int) -> dict:
    at = f"{day}T10:00:0{n}.000Z"
    return {"messageId": f"form-{name}-{n}", "type": "track", "event": "Form Submitted",
            "anonymousId": f"device-{name}", "userId": CONTACT_IDS[name],
            "properties": {"form_id": "contact-us", "page_path": "/contact"},
            "context": {"page": {"path": "/contact", "url": "https://www.example.com/contact", "referrer": ""}},
            "timestamp": at, "sentAt": at, "receivedAt": at}


def fill_history(conninfo: str) -> None:
    batch, loaded = str(uuid.uuid4()), datetime.now(UTC)
    crm = {"companies": [_company(c) for c in COMPANIES], "contacts": [_contact(n) for n in CONTACTS],
           "deals": [_deal(n, at) for n, at in DEALS.items()]}
    with psycopg.connect(conninfo) as conn, conn.cursor() as cur:
        for obj, records in crm.items():
            with cur.copy(f"copy raw.crm_{obj} (_batch_id, _loaded_at, _source, record_id, updated_at, archived, "
                          "record) from stdin") as cp:
                for rec in records:
                    cp.write_row((batch, loaded, "hand-made", rec["id"], rec["updatedAt"], False, json.dumps(rec)))
        with cur.copy("copy raw.analytics_events (_batch_id, _loaded_at, _source, _line, message_id, event_type, "
                      "event_name, anonymous_id, user_id, event_at, received_at, record) from stdin") as cp:
            line = 0
            for name, (_, _, forms, day) in CONTACTS.items():
                for n in range(forms):
                    ev, line = _form(name, day, n), line + 1
                    cp.write_row((batch, loaded, "hand-made", line, ev["messageId"], ev["type"], ev["event"],
                                  ev["anonymousId"], ev["userId"], ev["timestamp"], ev["receivedAt"], json.dumps(ev)))


def _candidate(tmp: Path, version: str, **changes) -> Path:
    doc = yaml.safe_load(settings.FUNNEL_DEFINITION.read_text(encoding="utf-8"))
    doc["version"] = version
    for key, value in changes.items():
        section, field = key.split("__")
        doc[section][field] = value
    path = tmp / f"{version}.yml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return path


def _rows(conninfo: str, query: str) -> list[tuple]:
    with psycopg.connect(conninfo) as conn:
        return conn.execute(query).fetchall()


def _content(conninfo: str, relation: str, columns: str) -> list[tuple]:
    return _rows(conninfo, f"select {columns} from {relation} order by 1, 2, 3")  # noqa: S608 - test's own names


@pytest.fixture(scope="module")
def history(wh_target, tmp_path_factory):
    """The hand-made history built by the current definition (the production marts); yields (admin, tmp)."""
    tmp = tmp_path_factory.mktemp("lab")
    admin = wh_target.conninfo("admin")
    drop_dbt_relations(admin)
    truncate_raw(admin)
    fill_history(admin)
    env = {"HANDOFF_DBT_DBNAME": wh_target.dbname, "DBT_TARGET_PATH": str(tmp / "target"),
           "DBT_LOG_PATH": str(tmp / "logs"), **dbt_runner.interval_env(None, None)}
    dbt_runner.run(["--quiet", "seed"], quiet=True, env=env)
    dbt_runner.run(["--quiet", "run"], quiet=True, env=env)
    return admin, tmp, wh_target.dbname


def _backtest(history, candidate: Path) -> lab.BacktestResult:
    _, _, dbname = history
    return lab.backtest(candidate, dbname=dbname, log=lambda _: None)


def test_the_hand_made_history_scores_as_its_table_says(history):
    admin, _, _ = history
    days = dict(_rows(admin, "select contact_id, max(score) from marts.fct_contact_scores_daily "
                              "group by contact_id"))
    best = {name: days[CONTACT_IDS[name]] for name in CONTACTS}
    assert 55 <= best["A"] <= 56 and 45 <= best["B"] <= 46 and 45 <= best["D"] <= 46
    assert 35 <= best["C"] <= 36 and best["E"] <= 21
    flagged = {cid for (cid,) in _rows(admin, "select contact_id from marts.fct_stage_transitions "
                                              "where to_stage = 'mql' and not is_inferred")}
    assert flagged == {CONTACT_IDS["A"]}


def test_the_backtest_of_the_current_definition_equals_the_production_marts(history):
    admin, tmp, _ = history
    result = _backtest(history, settings.FUNNEL_DEFINITION)
    assert "fct_stage_transitions" in result.rebuilt and "fct_contact_scores_daily" in result.rebuilt
    for relation, columns in (("fct_stage_transitions", "contact_id, to_stage, transitioned_at, evidence_source, "
                                                        "rule_ids, is_inferred, definition_version"),
                              ("fct_contact_scores_daily", "contact_id, score_date, score, fit_score, "
                                                           "engagement_score"),
                              ("mql_sql_conversion_cohorts", "cohort_period, segment_type, segment_value, "
                                                             "months_since_mql, mqls, sqls_cumulative")):
        production = _content(admin, f"marts.{relation}", columns)
        assert production, relation
        assert _content(admin, f"backtest.{relation}", columns) == production, relation
    by_definition = {row["definition"]: row for row in result.rows if row["cohort_period"] == FEBRUARY}
    same = {k: v for k, v in by_definition["current"].items() if k != "definition"}
    assert {k: v for k, v in by_definition["candidate"].items() if k != "definition"} == same
    assert same["mqls_added"] == 0 and same["mqls_dropped"] == 0
    # the current rows are the production cohort mart's: February's MQLs (A flagged, B inferred from its deal)
    assert same["mqls"] == _rows(admin, "select mqls from marts.mql_sql_conversion_cohorts where segment_type = "
                                        "'all' and cohort_period = '2026-02-01' and months_since_mql = 0")[0][0] == 2


def test_lowering_the_threshold_by_ten_adds_the_two_mqls_a_person_counts(history, capsys):
    admin, tmp, _ = history
    candidate = _candidate(tmp, "2026.12.0-lower", mql__score_threshold=40)
    production_before = _content(admin, "marts.fct_stage_transitions", "contact_id, to_stage, transitioned_at")
    watermarks_before = _content(admin, "intermediate.handoff_watermarks", "log, model, changes_to::text")
    result = _backtest(history, candidate)
    rows = {row["definition"]: row for row in result.rows if row["cohort_period"] == FEBRUARY}
    current, cand = rows["current"], rows["candidate"]
    assert (current["mqls_flagged"], cand["mqls_flagged"]) == (1, 3)  # A; A, B, D
    assert (cand["mqls_added"], cand["mqls_dropped"]) == (2, 0)  # B and D
    assert current["mql_precision"] == Decimal(1) and cand["mql_precision"] == round(Decimal(2) / 3, 4)
    assert current["opportunities_opened"] == cand["opportunities_opened"] == 2  # A's and B's deals
    assert current["opportunity_coverage"] == Decimal("0.5") and cand["opportunity_coverage"] == Decimal(1)
    assert current["is_complete"] and cand["is_complete"]
    added = {cid for (cid,) in _rows(admin, "select contact_id from backtest.fct_stage_transitions "
                                            "where to_stage = 'mql' and not is_inferred")}
    assert added == {CONTACT_IDS[n] for n in ("A", "B", "D")}
    # production untouched, its change logs' watermarks included; the mart holds this backtest's rows
    assert _content(admin, "marts.fct_stage_transitions", "contact_id, to_stage, transitioned_at") == production_before
    assert _content(admin, "intermediate.handoff_watermarks", "log, model, changes_to::text") == watermarks_before
    assert {v for (v,) in _rows(admin, "select distinct definition_version from marts.funnel_backtest")} == {
        result.current.version, "2026.12.0-lower"}
    report = "\n".join(report_lines(result))
    assert "mql_score_threshold: 50 -> 40" in report
    assert "2026-02-01" in report and "3 -> 3" not in report


def test_a_second_backtest_while_one_runs_is_refused_and_changes_nothing(history):
    admin, _, dbname = history
    before = _content(admin, "marts.funnel_backtest", "definition, cohort_period, mqls")
    with psycopg.connect(admin, autocommit=True) as running:
        running.execute("select pg_advisory_lock(hashtext(%s))", [LOCK_KEY])
        with pytest.raises(BacktestBusy, match="another backtest is running"):
            lab.backtest(settings.FUNNEL_DEFINITION, dbname=dbname, log=lambda _: None)
    assert _content(admin, "marts.funnel_backtest", "definition, cohort_period, mqls") == before
