"""The rule operators' one Python meaning (the SQL meaning is dbt_project/macros/funnel_operators.sql; a test
evaluates both on the same inputs and expects the same answers).

``holds(operator, actual, expected)``:
- ``actual`` None (the attribute is unknown), or an empty list, never meets a condition, whatever the operator
  (the SQL has no row for it);
- a list ``actual`` is a multi-valued attribute (cms): ``=``/``in`` hold when any value meets them,
  ``!=``/``not_in`` when none meets the positive form; the numeric comparisons never hold on it;
- ``in``/``not_in`` test membership of ``expected`` (a list); ``=``/``!=`` compare exactly (text is
  case-sensitive); ``>=``, ``>``, ``<=``, ``<`` compare numbers;
- a value of another type than ``expected`` (text against a number, or a number against text) holds for none of
  ``=``, ``!=``, ``>=``, ``>``, ``<=``, ``<`` (SQL compares it with null).
"""

from __future__ import annotations

import operator as _op
from collections.abc import Callable
from typing import Any

NUMERIC_OPERATORS = (">=", ">", "=", "!=", "<=", "<")
LIST_OPERATORS = ("in", "not_in")
OPERATORS = NUMERIC_OPERATORS + LIST_OPERATORS
TEXT_OPERATORS = ("=", "!=", "in", "not_in")
# the negated operators hold when their positive form does not
NEGATED = {"!=": "=", "not_in": "in"}

_ORDER: dict[str, Callable[[Any, Any], bool]] = {">=": _op.ge, ">": _op.gt, "<=": _op.le, "<": _op.lt}
_ON_NUMBERS: dict[str, Callable[[Any, Any], bool]] = {**_ORDER, "=": _op.eq, "!=": _op.ne}


def is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _meets(operator: str, actual: Any, expected: Any) -> bool | None:
    """One value against the positive form of ``operator`` (=, in, or an order comparison); None when the value
    and ``expected`` are of different types (text against a number), as SQL's null."""
    if operator == "in":
        return isinstance(actual, str) and actual in expected
    if is_number(expected) != is_number(actual) or not (is_number(actual) or isinstance(actual, str)):
        return None
    if operator == "=":
        return actual == expected
    return _ORDER[operator](actual, expected) if is_number(actual) else None


def holds(operator: str, actual: Any, expected: Any) -> bool:
    """Whether an attribute or a feature total ``actual`` meets ``operator expected`` (see the module doc)."""
    if operator in _ON_NUMBERS and is_number(actual) and is_number(expected):  # the common case, short
        return _ON_NUMBERS[operator](actual, expected)
    if operator not in OPERATORS:
        raise ValueError(f"unknown operator {operator!r} (allowed: {', '.join(OPERATORS)})")
    multi = isinstance(actual, (list, tuple))
    values = [v for v in (actual if multi else [actual]) if v is not None]
    positive = NEGATED.get(operator, operator)
    if not values or (multi and positive in _ORDER):
        return False
    results = [_meets(positive, v, expected) for v in values]
    # any value meets it -> true; else any definite miss -> false; else unknown (SQL null: the rule never holds)
    met = True if True in results else False if False in results else None
    if met is None:
        return False
    return not met if operator in NEGATED else met
