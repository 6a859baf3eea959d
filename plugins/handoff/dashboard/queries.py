"""The dashboard's and the report's data: one SQL query per view, on the marts only, as ``handoff_bi_reader``.

Every function takes an open connection and the filters, and returns plain rows (a list of dicts, the marts'
column names as keys), so the Streamlit page, the static report and the tests read the same numbers. No query
touches ``raw``, ``ops``, ``staging`` or ``intermediate``: the BI role cannot, and neither should a chart.

Filters: ``segment_type`` / ``segment_value`` (``all`` / ``all`` for every contact), ``period_from`` /
``period_to`` (first days of cohort periods, inclusive; None for open-ended) and, for the volume and follow-up
views, ``grain`` (``None`` for the definition's cohort grain, or a coarser ``quarter`` / ``year``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import psycopg
from psycopg.rows import dict_row

GRAINS = ("quarter", "year")  # coarser than the definition's month/week, for the volume and follow-up views


@dataclass(frozen=True)
class Filters:
    segment_type: str = "all"
    segment_value: str = "all"
    period_from: date | None = None
    period_to: date | None = None
    grain: str | None = None  # None: the definition's cohort grain

    def __post_init__(self) -> None:
        if self.grain is not None and self.grain not in GRAINS:
            raise ValueError(f"grain must be one of {GRAINS} or None (the definition's), got {self.grain!r}")

    def params(self) -> dict:
        return {"segment_type": self.segment_type, "segment_value": self.segment_value,
                "period_from": self.period_from, "period_to": self.period_to, "grain": self.grain}


def rows(conn: psycopg.Connection, query: str, params: dict | None = None) -> list[dict]:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(query, params or {}).fetchall()


def definition(conn: psycopg.Connection) -> dict:
    """The funnel definition the marts were built with: version, grain, headline lag, healthy band, goal, SLA hours.
    Empty values (None) when the marts are not built yet."""
    found = rows(conn, """
        select
            (select max(definition_version) from marts.mql_sql_rate_health) as definition_version,
            (select max(cohort_grain) from marts.mql_sql_rate_health) as cohort_grain,
            (select max(lag_periods) from marts.mql_sql_rate_health) as sales_cycle_lag_periods,
            (select max(healthy_min_rate) from marts.mql_sql_rate_health) as healthy_min_rate,
            (select max(healthy_max_rate) from marts.mql_sql_rate_health) as healthy_max_rate,
            (select max(mql_goal) from marts.sla_mql_volume) as mql_goal,
            (select max(sla_hours) from marts.sla_sql_follow_up) as sla_hours,
            (select max(period_end_at) filter (where is_complete) from marts.sla_mql_volume) as complete_until
    """)
    return found[0]


def segment_values(conn: psycopg.Connection) -> dict[str, list[str]]:
    """Every segment type the marts report, with its values (``all`` first)."""
    out: dict[str, list[str]] = {}
    for row in rows(conn, """
        select segment_type, segment_value from marts.mql_sql_conversion_cohorts
        group by segment_type, segment_value
        order by segment_type <> 'all', segment_type, segment_value"""):
        out.setdefault(row["segment_type"], []).append(row["segment_value"])
    return out


def periods(conn: psycopg.Connection) -> list[date]:
    """The cohort periods the marts hold, oldest first (for the period filter)."""
    return [r["period"] for r in rows(conn, "select period from marts.sla_mql_volume order by period")]


def cohort_heatmap(conn: psycopg.Connection, f: Filters) -> list[dict]:
    """One row per cohort × periods since MQL: MQLs, SQLs so far, the rate, and whether the cell is complete
    (``is_complete`` false: the period has not ended, its rate can still grow — an immature cell)."""
    return rows(conn, """
        select cohort_period, months_since_mql, mqls, sqls_cumulative, conversion_rate, is_complete,
            median_days_mql_to_sql, definition_version
        from marts.mql_sql_conversion_cohorts
        where segment_type = %(segment_type)s and segment_value = %(segment_value)s
            and (%(period_from)s::date is null or cohort_period >= %(period_from)s::date)
            and (%(period_to)s::date is null or cohort_period <= %(period_to)s::date)
        order by cohort_period, months_since_mql""", f.params())


def lagged_ratio(conn: psycopg.Connection, f: Filters) -> list[dict]:
    """One row per period: the headline lagged rate (SQLs in the period / MQLs ``lag`` periods before) with its
    verdict against the healthy band, and beside it the same-period rate (lag 0: SQLs / MQLs of the same period).
    ``is_complete`` false marks the period still running (its SQLs so far; not judged)."""
    return rows(conn, """
        select health.period, health.lag_periods, health.mql_period, health.sqls, health.mqls, health.rate,
            health.healthy_min_rate, health.healthy_max_rate, health.health_status, health.is_complete,
            same_period.sqls as same_period_sqls, same_period.mqls as same_period_mqls,
            same_period.rate as same_period_rate, health.definition_version
        from marts.mql_sql_rate_health as health
        left join marts.mql_sql_lagged_conversion as same_period
            on health.period = same_period.period
            and health.segment_type = same_period.segment_type
            and health.segment_value = same_period.segment_value
            and same_period.lag_periods = 0
        where health.segment_type = %(segment_type)s and health.segment_value = %(segment_value)s
            and (%(period_from)s::date is null or health.period >= %(period_from)s::date)
            and (%(period_to)s::date is null or health.period <= %(period_to)s::date)
        order by health.period""", f.params())


def conversion_by_segment(conn: psycopg.Connection, f: Filters) -> list[dict]:
    """For the filter's segment type, one row per segment value: the MQLs of the complete cohort cells at the
    headline lag (cohorts old enough to have had ``lag`` full periods), the SQLs among them by then, and the rate.
    Cohorts too young for that are left out, so young segments are not made to look worse."""
    return rows(conn, """
        select cohorts.segment_value, sum(cohorts.mqls)::integer as mqls,
            sum(cohorts.sqls_cumulative)::integer as sqls,
            round(sum(cohorts.sqls_cumulative)::numeric / nullif(sum(cohorts.mqls), 0), 4) as conversion_rate,
            count(*)::integer as cohorts, max(cohorts.months_since_mql) as within_periods,
            max(cohorts.definition_version) as definition_version
        from marts.mql_sql_conversion_cohorts as cohorts
        where cohorts.segment_type = %(segment_type)s
            and cohorts.is_complete
            and cohorts.months_since_mql = (select max(lag_periods) from marts.mql_sql_rate_health)
            and (%(period_from)s::date is null or cohorts.cohort_period >= %(period_from)s::date)
            and (%(period_to)s::date is null or cohorts.cohort_period <= %(period_to)s::date)
        group by cohorts.segment_value
        order by mqls desc, cohorts.segment_value""", f.params())


def mql_volume(conn: psycopg.Connection, f: Filters) -> list[dict]:
    """MQLs per period against the goal (the goal per cohort period times the periods in a coarser grain)."""
    return rows(conn, """
        select coalesce(date_trunc(%(grain)s, period)::date, period) as period, sum(mqls)::integer as mqls,
            sum(mql_goal)::integer as mql_goal, bool_and(is_complete) as is_complete,
            case when bool_and(is_complete) then sum(mqls) >= sum(mql_goal) end as is_goal_met,
            max(definition_version) as definition_version
        from marts.sla_mql_volume
        where (%(period_from)s::date is null or period >= %(period_from)s::date)
            and (%(period_to)s::date is null or period <= %(period_to)s::date)
        group by 1
        order by 1""", f.params())


def follow_up_sla(conn: psycopg.Connection, f: Filters) -> list[dict]:
    """New SQLs per period (of ``sql_at``, UTC) by follow-up outcome (met; late: followed up after the due time;
    never: due time passed with no follow-up; pending), with the median hours to the owner's first call or meeting
    among those followed up."""
    return rows(conn, """
        with by_period as (
            select date_trunc(coalesce(%(grain)s, cohort_grain), sql_at at time zone 'UTC')::date as period,
                follow_up_outcome, hours_to_follow_up, definition_version
            from marts.sla_sql_follow_up
            cross join (select max(cohort_grain) as cohort_grain from marts.mql_sql_rate_health) as grain
        )
        select period, follow_up_outcome, count(*)::integer as sqls,
            round((percentile_cont(0.5) within group (order by hours_to_follow_up))::numeric, 2)
                as median_hours_to_follow_up,
            max(definition_version) as definition_version
        from by_period
        where (%(period_from)s::date is null or period >= %(period_from)s::date)
            and (%(period_to)s::date is null or period <= %(period_to)s::date)
        group by period, follow_up_outcome
        order by period, follow_up_outcome""", f.params())


def time_in_stage(conn: psycopg.Connection, f: Filters) -> list[dict]:
    """Per stage, for the filter's segment: contacts that left it with the median and p75 days they stayed, and the
    contacts still in it with the median age of their stay so far (a floor, not a duration)."""
    return rows(conn, """
        select stage, contacts_exited, median_days_in_stage, p75_days_in_stage, contacts_current,
            median_days_current, contacts_inferred, definition_version
        from marts.stage_durations_by_segment
        where segment_type = %(segment_type)s and segment_value = %(segment_value)s
        order by array_position(
            array['lead', 'mql', 'sql', 'opportunity', 'customer', 'disqualified', 'recycled'], stage), stage""",
        f.params())


def rule_lift(conn: psycopg.Connection) -> list[dict]:
    """The definition lab: per scoring rule, the opportunity rate of the MQLs it fired for against the others, and
    the lift with its 95% interval (null below the minimum count: ``is_lift_reported`` false)."""
    return rows(conn, """
        select rule_id, rule_kind, points, contacts_with, outcomes_with, rate_with, contacts_without,
            outcomes_without, rate_without, lift, lift_lower, lift_upper, is_lift_reported, definition_version
        from marts.funnel_rule_lift
        order by rule_order""")


def backtest(conn: psycopg.Connection, f: Filters) -> list[dict]:
    """The definition lab: the last backtest (``handoff funnel backtest``), one row per definition (current,
    candidate) × cohort period; empty until a backtest ran."""
    return rows(conn, """
        select definition, definition_version, cohort_period, mqls, mqls_flagged, mqls_added, mqls_dropped,
            mql_precision, opportunity_coverage, median_days_mql_to_opportunity, mqls_vs_goal, is_complete
        from marts.funnel_backtest
        where (%(period_from)s::date is null or cohort_period >= %(period_from)s::date)
            and (%(period_to)s::date is null or cohort_period <= %(period_to)s::date)
        order by cohort_period, definition desc""", f.params())


# the headline views, in the order the dashboard and the report show them
VIEWS = {
    "cohort_heatmap": cohort_heatmap,
    "lagged_ratio": lagged_ratio,
    "conversion_by_segment": conversion_by_segment,
    "mql_volume": mql_volume,
    "follow_up_sla": follow_up_sla,
    "time_in_stage": time_in_stage,
}


def all_views(conn: psycopg.Connection, f: Filters) -> dict[str, list[dict]]:
    return {name: view(conn, f) for name, view in VIEWS.items()}
