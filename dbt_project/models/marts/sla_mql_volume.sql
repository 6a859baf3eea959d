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

mqls as (
    select date_trunc(settings.cohort_grain, segments.mql_at at time zone 'UTC')::date as period, count(*) as mqls
    from segments
    cross join settings
    cross join run_interval
    where segments.segment_type = 'all'
        and segments.mql_at < run_interval.interval_end_at
    group by 1
),

periods as (
    select periods.period::date as period
    from settings
    cross join run_interval
    cross join lateral generate_series(
        (select min(period) from mqls)::timestamp,
        date_trunc(settings.cohort_grain, run_interval.interval_end_date::timestamp),
        settings.period_interval
    ) as periods (period)
),

final as (
    select
        periods.period,
        settings.cohort_grain,
        coalesce(mqls.mqls, 0)::integer as mqls,
        settings.mql_goal_per_period as mql_goal,
        case when settings.mql_goal_per_period > 0
            then round(coalesce(mqls.mqls, 0)::numeric / settings.mql_goal_per_period, 4) end as goal_attainment,
        coalesce(mqls.mqls, 0) >= settings.mql_goal_per_period as is_goal_met,
        {{ utc_midnight('periods.period + settings.period_interval') }} <= run_interval.interval_end_at
            as is_complete,
        case
            when coalesce(mqls.mqls, 0) >= settings.mql_goal_per_period then 'met'
            when {{ utc_midnight('periods.period + settings.period_interval') }} <= run_interval.interval_end_at
                then 'missed'
            else 'in_progress'
        end as sla_status,
        settings.definition_version
    from periods
    cross join settings
    cross join run_interval
    left join mqls on periods.period = mqls.period
)

select * from final
