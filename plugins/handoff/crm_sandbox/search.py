"""`POST /crm/v3/objects/{type}/search`: request parsing, filter evaluation and sorting.

Filter groups are ORed, filters inside a group ANDed. Values compare as HubSpot does for
the property's kind: datetimes by instant (filter values as epoch-millisecond strings, ISO
accepted too), numbers numerically, everything else as case-insensitive strings.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .limits import limit
from .model import DEFAULT_PROPERTIES, as_number, parse_datetime_ms

MAX_LIMIT = limit("search_page")
RESULT_CAP = limit("search_results_per_query")
MAX_FILTER_GROUPS = limit("search_filter_groups")
MAX_FILTERS_PER_GROUP = limit("search_filters_per_group")
MAX_FILTERS_TOTAL = limit("search_filters_total")

OPERATORS = frozenset({"EQ", "NEQ", "LT", "LTE", "GT", "GTE", "BETWEEN", "IN", "NOT_IN", "HAS_PROPERTY",
                       "NOT_HAS_PROPERTY", "CONTAINS_TOKEN", "NOT_CONTAINS_TOKEN"})
_NEEDS_VALUE = frozenset({"EQ", "NEQ", "LT", "LTE", "GT", "GTE", "BETWEEN", "CONTAINS_TOKEN", "NOT_CONTAINS_TOKEN"})
_QUERY_PROPERTIES = ("email", "firstname", "lastname", "name", "domain", "dealname", "hs_task_subject",
                     "phone", "company")


class SearchError(ValueError):
    """A request HubSpot would answer with 400 VALIDATION_ERROR."""


@dataclass(frozen=True)
class Filter:
    property_name: str
    operator: str
    value: Any = None
    high_value: Any = None
    values: tuple[Any, ...] = ()


@dataclass(frozen=True)
class Sort:
    property_name: str
    descending: bool


@dataclass(frozen=True)
class SearchRequest:
    filter_groups: tuple[tuple[Filter, ...], ...]
    sorts: tuple[Sort, ...]
    properties: tuple[str, ...]
    limit: int
    offset: int
    query: str | None


def parse_search(object_type: str, body: Any) -> SearchRequest:
    if not isinstance(body, dict):
        raise SearchError("Invalid input JSON: the search request must be a JSON object.")
    limit = body.get("limit", 10)
    if limit is None:
        limit = 10
    if not isinstance(limit, int) or isinstance(limit, bool) or limit < 0:
        raise SearchError(f"limit must be a non-negative integer, got {limit!r}.")
    if limit > MAX_LIMIT:
        raise SearchError(f"limit must be less than or equal to {MAX_LIMIT}, got {limit}.")
    after = body.get("after")
    offset = 0
    if after not in (None, ""):
        text = str(after)
        if not text.isdigit():
            raise SearchError(f"after must be a numeric paging cursor, got {after!r}.")
        offset = int(text)
    groups_raw = body.get("filterGroups") or []
    if not isinstance(groups_raw, list):
        raise SearchError("filterGroups must be a list.")
    if len(groups_raw) > MAX_FILTER_GROUPS:
        raise SearchError(f"Too many filter groups: {len(groups_raw)} (at most {MAX_FILTER_GROUPS}).")
    groups: list[tuple[Filter, ...]] = []
    total = 0
    for gi, group in enumerate(groups_raw):
        filters_raw = (group or {}).get("filters") or []
        if len(filters_raw) > MAX_FILTERS_PER_GROUP:
            raise SearchError(f"filterGroups[{gi}] has {len(filters_raw)} filters "
                              f"(at most {MAX_FILTERS_PER_GROUP}).")
        total += len(filters_raw)
        groups.append(tuple(_parse_filter(f, gi, fi) for fi, f in enumerate(filters_raw)))
    if total > MAX_FILTERS_TOTAL:
        raise SearchError(f"Too many filters: {total} (at most {MAX_FILTERS_TOTAL} across all groups).")
    sorts = tuple(_parse_sort(s) for s in (body.get("sorts") or []))
    properties = body.get("properties") or []
    if not isinstance(properties, list):
        raise SearchError("properties must be a list of property names.")
    props = tuple(str(p) for p in properties) or DEFAULT_PROPERTIES[object_type]
    query = body.get("query")
    return SearchRequest(tuple(groups), sorts, props, limit, offset, str(query) if query else None)


def _parse_filter(raw: Any, gi: int, fi: int) -> Filter:
    where = f"filterGroups[{gi}].filters[{fi}]"
    if not isinstance(raw, dict) or not raw.get("propertyName"):
        raise SearchError(f"{where}: propertyName is required.")
    op = str(raw.get("operator") or "EQ").upper()
    if op not in OPERATORS:
        raise SearchError(f"{where}: unknown operator {op!r}.")
    if op in _NEEDS_VALUE and raw.get("value") is None:
        raise SearchError(f"{where}: operator {op} requires a value.")
    if op == "BETWEEN" and raw.get("highValue") is None:
        raise SearchError(f"{where}: operator BETWEEN requires value and highValue.")
    if op in ("IN", "NOT_IN") and not isinstance(raw.get("values"), list):
        raise SearchError(f"{where}: operator {op} requires a values list.")
    return Filter(str(raw["propertyName"]), op, raw.get("value"), raw.get("highValue"),
                  tuple(raw.get("values") or ()))


def _parse_sort(raw: Any) -> Sort:
    if isinstance(raw, dict):
        name = raw.get("propertyName")
        if not name:
            raise SearchError("sorts: propertyName is required.")
        direction = str(raw.get("direction") or "ASCENDING").upper()
        if direction not in ("ASCENDING", "DESCENDING"):
            raise SearchError(f"sorts: direction must be ASCENDING or DESCENDING, got {direction!r}.")
        return Sort(str(name), direction == "DESCENDING")
    if isinstance(raw, str) and raw.strip():
        text = raw.strip()
        if text.startswith("-"):
            return Sort(text[1:], True)
        name, _, direction = text.partition(" ")
        return Sort(name, direction.strip().upper() in ("DESC", "DESCENDING"))
    raise SearchError(f"sorts: cannot read sort {raw!r}.")


# --------------------------------------------------------------------------- evaluation

def _comparable(stored: Any, probe: Any) -> tuple[Any, Any] | None:
    """A pair of comparable values for a stored property value and a filter value, by kind."""
    if stored is None or stored == "":
        return None
    probe_num = as_number(probe)
    stored_num = as_number(stored)
    if probe_num is not None and stored_num is not None:
        return stored_num, probe_num
    stored_ms = parse_datetime_ms(stored)
    probe_ms = parse_datetime_ms(probe)
    if stored_ms is not None and probe_ms is not None:
        return stored_ms, probe_ms
    return str(stored).casefold(), str(probe).casefold()


def _equal(stored: Any, probe: Any) -> bool:
    pair = _comparable(stored, probe)
    return pair is not None and pair[0] == pair[1]


def filter_matches(props: dict[str, Any], f: Filter) -> bool:
    stored = props.get(f.property_name)
    op = f.operator
    if op == "HAS_PROPERTY":
        return stored not in (None, "")
    if op == "NOT_HAS_PROPERTY":
        return stored in (None, "")
    if op == "EQ":
        return _equal(stored, f.value)
    if op == "NEQ":
        return not _equal(stored, f.value)
    if op == "IN":
        return any(_equal(stored, v) for v in f.values)
    if op == "NOT_IN":
        return not any(_equal(stored, v) for v in f.values)
    if op in ("CONTAINS_TOKEN", "NOT_CONTAINS_TOKEN"):
        text = str(stored or "").casefold()
        pattern = str(f.value).casefold()
        tokens = text.replace("@", " ").replace(";", " ").replace(",", " ").split() + [text]
        hit = any(fnmatch.fnmatchcase(t, pattern) for t in tokens) if "*" in pattern else \
            any(t == pattern for t in tokens)
        return hit if op == "CONTAINS_TOKEN" else not hit
    if op == "BETWEEN":
        low, high = _comparable(stored, f.value), _comparable(stored, f.high_value)
        if low is None or high is None or type(low[0]) is not type(high[0]):
            return False
        return low[1] <= low[0] <= high[1]
    pair = _comparable(stored, f.value)
    if pair is None:
        return False
    try:
        left, right = pair
        return {"LT": left < right, "LTE": left <= right, "GT": left > right, "GTE": left >= right}[op]
    except TypeError:
        return False


def record_matches(props: dict[str, Any], request: SearchRequest) -> bool:
    if request.query:
        needle = request.query.casefold()
        if not any(needle in str(props.get(p) or "").casefold() for p in _QUERY_PROPERTIES):
            return False
    if not request.filter_groups:
        return True
    return any(all(filter_matches(props, f) for f in group) for group in request.filter_groups)


def sort_key(sort: Sort) -> Callable[[dict[str, Any]], tuple]:
    """Sort key putting empty values last; numbers and datetimes by value."""

    def key(props: dict[str, Any]) -> tuple:
        value = props.get(sort.property_name)
        if value in (None, ""):
            return (2, 0)
        number = as_number(value)
        if number is not None:
            return (0, number)
        ms = parse_datetime_ms(value)
        if ms is not None:
            return (0, float(ms))
        return (1, str(value).casefold())

    return key


def updated_bounds(request: SearchRequest, lastmodified_property: str) -> tuple[int | None, int | None]:
    """Bounds on updatedAt implied by every filter group (used to narrow the SQL scan)."""
    if len(request.filter_groups) != 1:
        return None, None
    low: int | None = None
    high: int | None = None
    for f in request.filter_groups[0]:
        if f.property_name != lastmodified_property:
            continue
        value_ms = parse_datetime_ms(f.value)
        if value_ms is None:
            continue
        if f.operator in ("GT", "GTE", "BETWEEN", "EQ"):
            low = value_ms if low is None else max(low, value_ms)
        if f.operator in ("LT", "LTE", "EQ"):
            high = value_ms if high is None else min(high, value_ms)
        if f.operator == "BETWEEN":
            high_ms = parse_datetime_ms(f.high_value)
            if high_ms is not None:
                high = high_ms if high is None else min(high, high_ms)
    return low, high
