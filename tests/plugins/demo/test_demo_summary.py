"""The demo's summary marks every number of a period that has not ended (the marts' is_complete false) and gives
no verdict on it: hand-made marts in the test database, a run on 2026-12-05 (December five days in), the printed
lines checked one by one."""

from __future__ import annotations

from datetime import date

import psycopg
import pytest
from handoff import demo
from psycopg import sql

MARTS = {
    "dim_contacts": "current_stage text, mql_at timestamptz, mql_inferred boolean, sql_at timestamptz,"
                    " sql_inferred boolean",
    "mql_sql_conversion_cohorts": "cohort_period date, segment_type text, months_since_mql integer, mqls integer,"
                                  " conversion_rate numeric, is_complete boolean",
    "mql_sql_lagged_conversion": "period date, segment_type text, lag_periods integer, sqls integer, mqls integer,"
                                 " rate numeric, is_complete boolean",
    "sla_mql_volume": "period date, mqls integer, mql_goal integer, sla_status text, is_complete boolean",
    "mql_sql_rate_health": "period date, segment_type text, rate numeric, health_status text, is_complete boolean",
    "sql_handoff_queue": "contact_id text",
}
ROWS = {
    "dim_contacts": [("sql", "2026-10-03", False, "2026-11-02", False), ("mql", "2026-12-02", False, None, False)],
    "mql_sql_conversion_cohorts": [
        ("2026-11-01", "all", 0, 150, 0.1, True), ("2026-11-01", "all", 1, 150, 0.2, False),
        ("2026-12-01", "all", 0, 40, 0.025, False), ("2026-12-01", "all", 1, 40, 0.025, False)],
    "mql_sql_lagged_conversion": [
        ("2026-11-01", "all", 0, 15, 150, 0.1, True), ("2026-12-01", "all", 0, 1, 40, 0.025, False),
        ("2026-12-01", "persona", 0, 1, 3, 0.333, False)],
    "sla_mql_volume": [("2026-10-01", 250, 200, "met", True), ("2026-11-01", 150, 200, "missed", True),
                       ("2026-12-01", 40, 200, "in_progress", False)],
    "mql_sql_rate_health": [
        ("2026-10-01", "all", 0.25, "healthy", True), ("2026-11-01", "all", 0.05, "too_low", True),
        ("2026-12-01", "all", 0.02, "in_progress", False), ("2026-12-01", "persona", 0.5, "in_progress", False)],
    "sql_handoff_queue": [],
}


@pytest.fixture
def marts(wh):
    reader = sql.Identifier(wh.credentials["bi_reader"]["user"])
    with psycopg.connect(wh.conninfo("admin"), autocommit=True) as conn:
        for name, columns in MARTS.items():
            table = sql.Identifier("marts", name)
            conn.execute(sql.SQL("drop table if exists {} cascade").format(table))
            conn.execute(sql.SQL("create table {} ({})").format(table, sql.SQL(columns)))
            conn.execute(sql.SQL("grant select on {} to {}").format(table, reader))
            for row in ROWS[name]:
                conn.execute(sql.SQL("insert into {} values ({})").format(
                    table, sql.SQL(", ").join(sql.Placeholder() * len(row))), row)
    yield wh
    with psycopg.connect(wh.conninfo("admin"), autocommit=True) as conn:
        for name in MARTS:
            conn.execute(sql.SQL("drop table if exists {} cascade").format(sql.Identifier("marts", name)))


def _section(text: str, title: str) -> list[str]:
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(title))
    end = next((i for i in range(start + 1, len(lines)) if not lines[i].startswith("  ")), len(lines))
    return lines[start:end]


def test_the_summary_marks_the_running_period_and_judges_only_ended_ones(marts):
    text = demo.summary(marts, date(2026, 12, 5), 1.0)

    cohorts = _section(text, "MQL→SQL cohorts")
    assert "* = still open" in cohorts[0]
    # the November cohort's month 0 has ended, its month 1 (December) has not; December's month 1 has not begun
    assert cohorts[1:] == ["  cohort   MQLs     +0     +1",
                           "  2026-11    150    10%    20%*",
                           "  2026-12     40     2%*"]

    lagged = _section(text, "Lagged conversion")
    assert "* = period in progress" in lagged[0]
    assert lagged[1:] == ["  2026-12  lag 0:      1 / 40    = 2.5% * in progress",
                          "  2026-11  lag 0:     15 / 150   = 10.0%"]

    verdicts = _section(text, "Verdicts, latest periods")
    assert "* = period in progress" in verdicts[0] and "not judged" in verdicts[0]
    assert verdicts[1:] == ["  period        MQLs / goal  goal         lagged rate  health",
                            "  2026-12        40* / 200   in_progress        2.0%*  in_progress",
                            "  2026-11       150  / 200   missed             5.0%   too_low",
                            "  2026-10       250  / 200   met               25.0%   healthy"]
