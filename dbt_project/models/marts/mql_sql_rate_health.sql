-- The headline lagged MQL→SQL rate (lag = conversion.sales_cycle_lag_periods) per period and segment, checked
-- against the agreed healthy band: too_high (the MQL bar may be too strict), too_low (too loose, or sales is not
-- following up), healthy, or no_data.
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
            when lagged.rate is null then 'no_data'
            when lagged.rate > settings.healthy_max_rate then 'too_high'
            when lagged.rate < settings.healthy_min_rate then 'too_low'
            else 'healthy'
        end as health_status,
        case
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
        lagged.definition_version
    from lagged
    cross join settings
    where lagged.is_sales_cycle_lag
)

select * from final
