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

judged as (
    select
        periods.period,
        coalesce(mqls.mqls, 0)::integer as mqls,
        {{ period_end_at('periods.period') }} as period_end_at,
        {{ period_is_complete(period_end_at('periods.period')) }} as is_complete
    from periods
    cross join settings
    cross join run_interval
    left join mqls on periods.period = mqls.period
),

final as (
    -- a period still running is not judged (in_progress, is_goal_met null): its MQLs so far are kept
    select
        judged.period,
        settings.cohort_grain,
        judged.mqls,
        settings.mql_goal_per_period as mql_goal,
        case when settings.mql_goal_per_period > 0
            then round(judged.mqls::numeric / settings.mql_goal_per_period, 4) end as goal_attainment,
        case when judged.is_complete then judged.mqls >= settings.mql_goal_per_period end as is_goal_met,
        judged.is_complete,
        case
            when not judged.is_complete then 'in_progress'
            when judged.mqls >= settings.mql_goal_per_period then 'met'
            else 'missed'
        end as sla_status,
        settings.definition_version,
        judged.period_end_at
    from judged
    cross join settings
)

select * from final
