-- The headline lagged MQL→SQL rate (lag = conversion.sales_cycle_lag_periods) per period and segment, checked
-- against the agreed healthy band: too_high (the MQL bar may be too strict), too_low (too loose, or sales is not
-- following up), healthy, or no_data. A period that has not ended by the run's data interval end is not judged:
-- in_progress, with the figures so far (its SQLs are still coming in).
with

lagged as (
    select * from {{ ref('mql_sql_lagged_conversion') }}
),

settings as (
    select * from {{ ref('int_funnel_settings') }}
),

final as (
    select
        lagged.period,
        lagged.cohort_grain,
        lagged.segment_type,
        lagged.segment_value,
        lagged.lag_periods,
        lagged.mql_period,
        lagged.sqls,
        lagged.mqls,
        lagged.rate,
        settings.healthy_min_rate,
        settings.healthy_max_rate,
        case
            when not lagged.is_complete then 'in_progress'
            when lagged.rate is null then 'no_data'
            when lagged.rate > settings.healthy_max_rate then 'too_high'
            when lagged.rate < settings.healthy_min_rate then 'too_low'
            else 'healthy'
        end as health_status,
        case
            when not lagged.is_complete then
                to_char(lagged.period, 'YYYY-MM-DD') || ' is in progress until '
                || to_char(lagged.period_end_at at time zone 'UTC', 'YYYY-MM-DD HH24:MI') || ' UTC: '
                || lagged.sqls || ' SQLs so far / ' || lagged.mqls || ' MQLs in ' || lagged.mql_period
                || coalesce(' = ' || round(lagged.rate, 3), ' (no rate)')
                || '; judged against the healthy band ' || settings.healthy_min_rate || '–'
                || settings.healthy_max_rate || ' once the period has ended'
            when lagged.rate is null then
                'no MQLs in ' || lagged.mql_period || ', so no lagged rate for ' || lagged.period
            when lagged.rate > settings.healthy_max_rate then
                'rate ' || round(lagged.rate, 3) || ' is above the healthy band ' || settings.healthy_min_rate
                || '–' || settings.healthy_max_rate || ': the MQL bar may be too strict (too few MQLs for the SQLs)'
            when lagged.rate < settings.healthy_min_rate then
                'rate ' || round(lagged.rate, 3) || ' is below the healthy band ' || settings.healthy_min_rate
                || '–' || settings.healthy_max_rate
                || ': the MQL bar may be too loose, or sales is not converting the MQLs it gets'
            else
                'rate ' || round(lagged.rate, 3) || ' is within the healthy band ' || settings.healthy_min_rate
                || '–' || settings.healthy_max_rate
        end as explanation,
        lagged.is_complete,
        lagged.definition_version,
        lagged.period_end_at
    from lagged
    cross join settings
    where lagged.is_sales_cycle_lag
)

select * from final
