"""marts.funnel_rule_lift recomputed in plain Python, for the tests that check it (test_dbt_models.py on the
800-contact sample, test_channel_ranking.py on the 5,000-contact one).

The recomputation reads only marts.dim_contacts (mql_at, opportunity_at) and marts.fct_contact_scores_daily (the
rules that scored each day) and config/funnel.yml (monthly cohorts, the sales-cycle lag), and the intervals come
from their textbook formulas — not from the project's SQL.
"""

from __future__ import annotations

import math
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta

import psycopg
from handoff import funnel

Z_95 = 1.959963984540054  # the standard normal's 97.5th percentile: a two-sided 95% interval


def wilson(successes: int, trials: int) -> tuple[float, float] | tuple[None, None]:
    """The Wilson score interval of successes / trials at 95%."""
    if trials == 0:
        return None, None
    p, n, z = successes / trials, trials, Z_95
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return centre - half, centre + half


def katz(a: int, n1: int, c: int, n0: int) -> tuple[float, float]:
    """The log-ratio (Katz) 95% interval of (a/n1) / (c/n0); a and c must be positive."""
    ratio = (a / n1) / (c / n0)
    se = math.sqrt(1 / a - 1 / n1 + 1 / c - 1 / n0)
    return ratio * math.exp(-Z_95 * se), ratio * math.exp(Z_95 * se)


def _add_months(d: date, n: int) -> date:
    y, m = divmod(d.month - 1 + n, 12)
    return date(d.year + y, m + 1, 1)


def expected_counts(admin: str, interval_end: datetime) -> dict[str, tuple[int, int, int, int]]:
    """rule_id -> (contacts_with, outcomes_with, contacts_without, outcomes_without), as docs/funnel.md defines
    them: the MQLs of monthly cohorts whose month + lag months ended by interval_end, less those already an
    opportunity at the end of their MQL day; a rule fired when it scored on the MQL day or before; the outcome is
    an opportunity before the window's end."""
    definition = funnel.load()
    assert definition.cohort_grain == "month"
    lag = definition.sales_cycle_lag_periods
    with psycopg.connect(admin) as conn:
        contacts = conn.execute(
            "select contact_id, mql_at, opportunity_at from marts.dim_contacts where mql_at is not null").fetchall()
        members: dict[str, tuple[date, bool]] = {}
        for cid, mql_at, opp_at in contacts:
            mql_day = mql_at.astimezone(UTC).date()
            window_end = datetime.combine(_add_months(mql_day.replace(day=1), lag + 1), datetime.min.time(), UTC)
            window_opens = datetime.combine(mql_day + timedelta(days=1), datetime.min.time(), UTC)
            if window_end > interval_end or (opp_at is not None and opp_at < window_opens):
                continue
            members[cid] = (mql_day, opp_at is not None and opp_at < window_end)
        fired: dict[str, set[str]] = defaultdict(set)
        for cid, score_date, rule_ids in conn.execute(
                "select contact_id, score_date, rule_ids from marts.fct_contact_scores_daily"):
            if cid in members and score_date <= members[cid][0]:
                fired[cid].update(rule_ids)
    out = {}
    for rule in definition.rules:
        with_rule = [hit for cid, (_, hit) in members.items() if rule.rule_id in fired[cid]]
        without = [hit for cid, (_, hit) in members.items() if rule.rule_id not in fired[cid]]
        out[rule.rule_id] = (len(with_rule), sum(with_rule), len(without), sum(without))
    return out


def assert_mart_matches(admin: str, interval_end: datetime, min_contacts: int = 30) -> dict[str, dict]:
    """Every row of marts.funnel_rule_lift equals the recomputation: counts exactly, rates, Wilson and Katz bounds
    to the mart's 4 places. Returns the mart's rows by rule_id."""
    expected = expected_counts(admin, interval_end)
    with psycopg.connect(admin) as conn, conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
        rows = {r["rule_id"]: r for r in cur.execute("select * from marts.funnel_rule_lift")}
    assert set(rows) == set(expected)
    for rule_id, (n1, a, n0, c) in expected.items():
        r = rows[rule_id]
        got = (r["contacts_with"], r["outcomes_with"], r["contacts_without"], r["outcomes_without"])
        assert got == (n1, a, n0, c), rule_id
        for side, (x, n) in (("with", (a, n1)), ("without", (c, n0))):
            low, high = wilson(x, n)
            assert _num(r[f"rate_{side}"]) == (None if n == 0 else pytest_approx(x / n)), (rule_id, side)
            assert _num(r[f"rate_{side}_lower"]) == (None if low is None else pytest_approx(low)), (rule_id, side)
            assert _num(r[f"rate_{side}_upper"]) == (None if high is None else pytest_approx(high)), (rule_id, side)
        reported = min(n1, n0) >= min_contacts and a > 0 and c > 0
        assert r["is_lift_reported"] is reported, rule_id
        if reported:
            low, high = katz(a, n1, c, n0)
            assert _num(r["lift"]) == pytest_approx((a / n1) / (c / n0)), rule_id
            assert (_num(r["lift_lower"]), _num(r["lift_upper"])) == (pytest_approx(low), pytest_approx(high)), rule_id
        else:
            assert (r["lift"], r["lift_lower"], r["lift_upper"]) == (None, None, None), rule_id
    return rows


def _num(value) -> float | None:
    return None if value is None else float(value)


def pytest_approx(value: float):
    import pytest  # noqa: PLC0415

    return pytest.approx(value, abs=0.00005 + 1e-12)  # the mart rounds to 4 places
