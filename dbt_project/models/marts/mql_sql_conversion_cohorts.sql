with

segments as (
    select * from {{ ref('int_contact_segments') }}
),

settings as (
    select * from {{ ref('int_funnel_settings') }}
),

run_interval as (
    select * from {{ ref('int_run_interval') }}
),

members as (
    -- cohort members: contacts that became MQL before the interval end; SQLs after it are not known yet
    select
        segments.segment_type,
        segments.segment_value,
        segments.contact_id,
        segments.mql_at,
        case when segments.sql_at < run_interval.interval_end_at then segments.sql_at end as sql_at,
        date_trunc(settings.cohort_grain, segments.mql_at at time zone 'UTC')::date as cohort_period
    from segments
    cross join settings
    cross join run_interval
    where segments.mql_at < run_interval.interval_end_at
),

cohorts as (
    select
        segment_type,
        segment_value,
        cohort_period,
        count(*)::integer as mqls,
        percentile_cont(0.5) within group (order by extract(epoch from sql_at - mql_at) / 86400.0)
            filter (where sql_at is not null) as median_days_mql_to_sql
    from members
    group by segment_type, segment_value, cohort_period
),

grid as (
    -- periods 0..max since the cohort, up to the one the interval ends in: a period that has not begun by the
    -- interval end has no figures yet and gets no row (the period running at the interval end does, in progress)
    select
        cohorts.*,
        periods.months_since_mql::integer as months_since_mql,
        {{ period_end_at('cohorts.cohort_period', 'periods.months_since_mql + 1') }} as period_end_at
    from cohorts
    cross join settings
    cross join run_interval
    cross join lateral generate_series(0, settings.max_periods_since_mql) as periods (months_since_mql)
    where {{ period_end_at('cohorts.cohort_period', 'periods.months_since_mql') }} < run_interval.interval_end_at
),

sqls as (
    select
        grid.segment_type,
        grid.segment_value,
        grid.cohort_period,
        grid.months_since_mql,
        count(members.sql_at)::integer as sqls_cumulative
    from grid
    left join members
        on grid.segment_type = members.segment_type
        and grid.segment_value = members.segment_value
        and grid.cohort_period = members.cohort_period
        and members.sql_at < grid.period_end_at
    group by grid.segment_type, grid.segment_value, grid.cohort_period, grid.months_since_mql
),

final as (
    select
        grid.cohort_period,
        settings.cohort_grain,
        grid.segment_type,
        grid.segment_value,
        grid.months_since_mql,
        grid.mqls,
        sqls.sqls_cumulative,
        grid.period_end_at,
        {{ period_is_complete('grid.period_end_at') }} as is_complete,
        round(grid.median_days_mql_to_sql::numeric, 2) as median_days_mql_to_sql,
        settings.definition_version
    from grid
    inner join sqls
        on grid.segment_type = sqls.segment_type
        and grid.segment_value = sqls.segment_value
        and grid.cohort_period = sqls.cohort_period
        and grid.months_since_mql = sqls.months_since_mql
    cross join settings
    cross join run_interval
)

select
    cohort_period,
    cohort_grain,
    segment_type,
    segment_value,
    months_since_mql,
    mqls,
    sqls_cumulative,
    trim_scale(sqls_cumulative::numeric / mqls) as conversion_rate,
    is_complete,
    period_end_at,
    median_days_mql_to_sql,
    definition_version
from final
