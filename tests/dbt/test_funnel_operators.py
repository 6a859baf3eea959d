"""The rule operators mean the same in Python (handoff.funnel.operators.holds, used by the validator, the sample
generator and the test readings) and in PostgreSQL (the dbt macros in dbt_project/macros/funnel_operators.sql,
which int_contact_rule_hits_daily and int_contact_fit_rule_hits evaluate rules with).

Both are evaluated on the same operator/value/input triples: a table of edge cases (nulls, equality at the
threshold, case, multi-valued attributes, text against numbers) and hypothesis-drawn numbers. The macros are
rendered from the dbt project's own file, so an edit to either side that changes a meaning fails here.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import jinja2
import psycopg
import pytest
from handoff import settings
from handoff.funnel import LIST_OPERATORS, NUMERIC_OPERATORS, holds
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

MACROS = (settings.DBT_PROJECT_DIR / "macros" / "funnel_operators.sql").read_text(encoding="utf-8")


def _render(expr: str) -> str:
    return jinja2.Environment().from_string(MACROS + expr).render().strip()


# behaviour and derived rules: the window's total (or days_since_last_activity) against the rule's value_num; a
# null comparison scores 0 (`case when ... then points else 0`), so it does not hold
NUMERIC_SQL = "select coalesce(" + _render(
    "{{ compare_numeric('%(actual)s::numeric', '%(op)s::text', '%(expected)s::numeric') }}") + ", false)"

# fit rules: the attribute's values (none, one, or several for cms), each against the positive form of the operator,
# bool_or'ed, then negated for != / not_in; values missing from the attribute have no row (the model drops nulls)
FIT_SQL = """
with rule as (select %(op)s::text as operator, %(value_text)s::text as value_text, %(value_num)s::numeric as value_num)
select coalesce(""" + _render(
    "{{ fit_rule_holds('rule.operator', 'bool_or(' ~ fit_value_meets('rule.operator', 'v.value_text', "
    "'v.value_num', 'rule.value_text', 'rule.value_num', 'l.value is not null') ~ ')') }}") + """, false)
from rule
cross join unnest(%(texts)s::text[], %(nums)s::numeric[]) as v (value_text, value_num)
left join unnest(%(listed)s::text[]) as l (value) on v.value_text = l.value
group by rule.operator
"""


@pytest.fixture(scope="module")
def conn(wh_target):
    with psycopg.connect(wh_target.conninfo("admin"), autocommit=True) as c:
        yield c


def sql_numeric(conn: psycopg.Connection, op: str, actual: Any, expected: Any) -> bool:
    return conn.execute(NUMERIC_SQL, {"actual": actual, "op": op, "expected": expected}).fetchone()[0]


def sql_fit(conn: psycopg.Connection, op: str, actual: Any, expected: Any) -> bool:
    """As the seeds carry the rule: value_num (a number), value_text (a string), or a list in funnel_lists."""
    values = [v for v in (actual if isinstance(actual, list) else [actual]) if v is not None]
    is_num = [isinstance(v, (int, float, Decimal)) for v in values]
    row = conn.execute(FIT_SQL, {
        "op": op,
        "value_text": expected if isinstance(expected, str) else None,
        "value_num": expected if isinstance(expected, (int, float)) else None,
        "texts": [None if n else v for v, n in zip(values, is_num, strict=True)],
        "nums": [v if n else None for v, n in zip(values, is_num, strict=True)],
        "listed": expected if isinstance(expected, list) else [],
    }).fetchone()
    return bool(row and row[0])  # no values: no row, the rule does not hold


THRESHOLD_CASES = [(op, actual, expected)
                   for op in NUMERIC_OPERATORS
                   for expected in (3, 0, 2.5, 45)
                   for actual in (None, 0, 1, 2, 2.5, 3, 4, 45, 46, -1)]

FIT_CASES = [
    # text attributes (persona, email_domain_type, industry, ...): exact and case-sensitive
    *[(op, actual, "student") for op in ("=", "!=")
      for actual in (None, "student", "Student", "student ", "", "economic_buyer")],
    *[(op, actual, ["economic_buyer", "technical_evaluator"]) for op in LIST_OPERATORS
      for actual in (None, "economic_buyer", "Economic_Buyer", "student", "")],
    # a multi-valued attribute (cms): `=`/`in` when any value meets it, `!=`/`not_in` when none does; no value at all
    # meets nothing; the order comparisons never hold on it
    *[(op, actual, ["wordpress", "hubspot"]) for op in LIST_OPERATORS
      for actual in ([], ["wordpress"], ["webflow", "hubspot"], ["webflow"], ["Wordpress"], ["webflow", "drupal"])],
    *[(op, actual, "hubspot") for op in ("=", "!=")
      for actual in ([], ["hubspot"], ["webflow", "hubspot"], ["webflow"])],
    (">=", ["wordpress"], 5), ("<", ["wordpress"], 5),
    # numeric attributes (annual_revenue, monthly_web_visitors): equality at the threshold
    *[(op, actual, 10_000_000) for op in NUMERIC_OPERATORS
      for actual in (None, 10_000_000, 9_999_999, 10_000_001, 10_000_000.5, 0)],
    # text against a number and a number against text: neither = nor != holds (SQL compares with null)
    ("=", "abc", 5), ("!=", "abc", 5), (">=", "abc", 5), ("<", "abc", 5),
    ("=", 5, "abc"), ("!=", 5, "abc"),
]


@pytest.mark.parametrize(("op", "actual", "expected"), THRESHOLD_CASES)
def test_threshold_operators_mean_the_same_in_python_and_sql(conn, op, actual, expected):
    assert holds(op, actual, expected) == sql_numeric(conn, op, actual, expected)


@pytest.mark.parametrize(("op", "actual", "expected"), FIT_CASES)
def test_fit_operators_mean_the_same_in_python_and_sql(conn, op, actual, expected):
    assert holds(op, actual, expected) == sql_fit(conn, op, actual, expected)


def test_the_edge_cases_decide_what_they_should():
    """The table above is not vacuous: a few of its answers, spelled out."""
    assert holds(">=", 3, 3) and not holds(">", 3, 3) and holds("<=", 2.5, 2.5)
    assert not holds("!=", None, "student") and not holds("not_in", None, ["a"])
    assert holds("not_in", ["webflow"], ["wordpress"]) and not holds("not_in", [], ["wordpress"])
    assert holds("!=", ["webflow"], "hubspot") and not holds("!=", ["webflow", "hubspot"], "hubspot")
    assert not holds("=", "Student", "student") and holds("!=", "Student", "student")


_numbers = st.one_of(st.integers(-1000, 1000), st.decimals(-1000, 1000, places=2).map(float))


@hsettings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(op=st.sampled_from(NUMERIC_OPERATORS), actual=st.one_of(st.none(), _numbers), expected=_numbers)
def test_numeric_operators_agree_on_drawn_numbers(conn, op, actual, expected):
    assert holds(op, actual, expected) == sql_numeric(conn, op, actual, expected)
    assert holds(op, actual, expected) == sql_fit(conn, op, actual, expected)


@hsettings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(op=st.sampled_from(("=", "!=", "in", "not_in")),
       actual=st.one_of(st.none(), st.sampled_from(("a", "A", "b", "")),
                        st.lists(st.sampled_from(("a", "A", "b", "c")), max_size=3, unique=True)),
       expected=st.lists(st.sampled_from(("a", "b", "B")), min_size=1, max_size=3, unique=True))
def test_text_operators_agree_on_drawn_values(conn, op, actual, expected):
    rule_value = expected if op in LIST_OPERATORS else expected[0]
    assert holds(op, actual, rule_value) == sql_fit(conn, op, actual, rule_value)
