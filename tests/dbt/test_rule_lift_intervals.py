"""The interval macros of marts.funnel_rule_lift (dbt_project/macros/intervals.sql) against their textbook formulas.

The counts are the hand-made history of the mart's unit test (models/marts/_unit_tests.yml,
rule_lift_counts_rules_fired_by_the_mql_day_in_ended_windows), which a person counts by eye: rule `form` fired
for 3 contacts of which 2 reached an opportunity, and for neither of the 1 of 2 others that did; rule `fit` 2 of 2
against 1 of 3. Here the project's own SQL, rendered from its file, gives their Wilson and log-ratio (Katz)
bounds, and Python computes the same bounds from the formulas (tests/dbt/rule_lift.py) — plus the edges: no
outcome, every contact an outcome, no contacts at all (null, not a division error).
"""

from __future__ import annotations

import jinja2
import psycopg
import pytest
from handoff import settings
from rule_lift import katz, wilson

MACROS = (settings.DBT_PROJECT_DIR / "macros" / "intervals.sql").read_text(encoding="utf-8")


def _sql(expr: str) -> str:
    return jinja2.Environment().from_string(MACROS + expr).render().strip()


WILSON = _sql("select {{ wilson_bound('%(x)s::integer', '%(n)s::integer', -1) }},"
              " {{ wilson_bound('%(x)s::integer', '%(n)s::integer', 1) }}")
_COUNTS = "'%(a)s::integer', '%(n1)s::integer', '%(c)s::integer', '%(n0)s::integer'"
KATZ = _sql(f"select {{{{ katz_ratio_bound({_COUNTS}, -1) }}}}, {{{{ katz_ratio_bound({_COUNTS}, 1) }}}}")


@pytest.fixture(scope="module")
def conn(wh_target):
    with psycopg.connect(wh_target.conninfo("admin"), autocommit=True) as c:
        yield c


@pytest.mark.parametrize(("x", "n"), [(2, 3), (1, 2), (2, 2), (1, 3), (0, 4), (3, 5), (0, 1), (113, 1120)])
def test_wilson_bounds_follow_the_formula(conn, x, n):
    low, high = conn.execute(WILSON, {"x": x, "n": n}).fetchone()
    want_low, want_high = wilson(x, n)
    assert (low, high) == (pytest.approx(want_low, abs=1e-12), pytest.approx(want_high, abs=1e-12))
    assert -1e-12 <= low <= x / n <= high <= 1 + 1e-12  # 0 of n: 0 but for the float's last bit


def test_wilson_of_no_contacts_is_null(conn):
    assert conn.execute(WILSON, {"x": 0, "n": 0}).fetchone() == (None, None)


@pytest.mark.parametrize(("a", "n1", "c", "n0"), [(2, 3, 1, 2), (2, 2, 1, 3), (52, 519, 61, 601)])
def test_katz_bounds_follow_the_formula_and_hold_the_lift(conn, a, n1, c, n0):
    low, high = conn.execute(KATZ, {"a": a, "n1": n1, "c": c, "n0": n0}).fetchone()
    want_low, want_high = katz(a, n1, c, n0)
    assert (low, high) == (pytest.approx(want_low, rel=1e-12), pytest.approx(want_high, rel=1e-12))
    assert low < (a / n1) / (c / n0) < high


@pytest.mark.parametrize(("a", "c"), [(0, 1), (1, 0), (0, 0)])
def test_katz_without_an_outcome_in_a_group_is_null(conn, a, c):
    assert conn.execute(KATZ, {"a": a, "n1": 4, "c": c, "n0": 4}).fetchone() == (None, None)
