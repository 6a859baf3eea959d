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

lists as (
    select * from {{ ref('funnel_lists') }}
),

lags as (
    select value::integer as lag_periods
    from lists
    where list_name = 'lags_to_report'
),

periodized as (
    select
        segments.segment_type,
        segments.segment_value,
        case when segments.mql_at < run_interval.interval_end_at
            then date_trunc(settings.cohort_grain, segments.mql_at at time zone 'UTC')::date end as mql_period,
        case when segments.sql_at < run_interval.interval_end_at
            then date_trunc(settings.cohort_grain, segments.sql_at at time zone 'UTC')::date end as sql_period
    from segments
    cross join settings
    cross join run_interval
    where segments.mql_at is not null or segments.sql_at is not null
),

mql_counts as (
    select segment_type, segment_value, mql_period as period, count(*)::integer as mqls
    from periodized
    where mql_period is not null
    group by 1, 2, 3
),

sql_counts as (
    select segment_type, segment_value, sql_period as period, count(*)::integer as sqls
    from periodized
    where sql_period is not null
    group by 1, 2, 3
),

segment_values as (
    select distinct segment_type, segment_value
    from periodized
    where mql_period is not null or sql_period is not null
),

periods as (
    select periods.period::date as period
    from settings
    cross join run_interval
    cross join lateral generate_series(
        (select least(min(mql_period), min(sql_period)) from periodized)::timestamp,
        date_trunc(settings.cohort_grain, run_interval.interval_end_date::timestamp),
        settings.period_interval
    ) as periods (period)
),

final as (
    select
        periods.period,
        settings.cohort_grain,
        segment_values.segment_type,
        segment_values.segment_value,
        lags.lag_periods,
        (periods.period - lags.lag_periods * settings.period_interval)::date as mql_period,
        coalesce(sql_counts.sqls, 0) as sqls,
        coalesce(mql_counts.mqls, 0) as mqls,
        lags.lag_periods = settings.sales_cycle_lag_periods as is_sales_cycle_lag,
        {{ period_end_at('periods.period') }} as period_end_at,
        {{ period_is_complete(period_end_at('periods.period')) }} as is_complete,
        settings.definition_version
    from periods
    cross join segment_values
    cross join lags
    cross join settings
    cross join run_interval
    left join sql_counts
        on segment_values.segment_type = sql_counts.segment_type
        and segment_values.segment_value = sql_counts.segment_value
        and periods.period = sql_counts.period
    left join mql_counts
        on segment_values.segment_type = mql_counts.segment_type
        and segment_values.segment_value = mql_counts.segment_value
        and (periods.period - lags.lag_periods * settings.period_interval)::date = mql_counts.period
)

select
    period,
    cohort_grain,
    segment_type,
    segment_value,
    lag_periods,
    mql_period,
    sqls,
    mqls,
    case when mqls > 0 then trim_scale(sqls::numeric / mqls) end as rate,
    is_sales_cycle_lag,
    is_complete,
    definition_version,
    period_end_at
from final
