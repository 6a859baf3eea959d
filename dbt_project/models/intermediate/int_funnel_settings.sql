-- The funnel definition's scalar settings (seed funnel_settings, key/value) as one typed row.
with

settings as (
    select * from {{ ref('funnel_settings') }}
),

final as (
    select
        max(value) filter (where setting = 'version') as definition_version,
        max(value) filter (where setting = 'name') as definition_name,
        max(value) filter (where setting = 'half_life_days')::double precision as half_life_days,
        max(value) filter (where setting = 'mql_score_threshold')::numeric as mql_score_threshold,
        max(value) filter (where setting = 'mql_min_fit_score')::numeric as mql_min_fit_score,
        max(value) filter (where setting = 'cohort_grain') as cohort_grain,
        max(value) filter (where setting = 'max_periods_since_mql')::integer as max_periods_since_mql,
        max(value) filter (where setting = 'sales_cycle_lag_periods')::integer as sales_cycle_lag_periods,
        max(value) filter (where setting = 'healthy_min_rate')::numeric as healthy_min_rate,
        max(value) filter (where setting = 'healthy_max_rate')::numeric as healthy_max_rate,
        max(value) filter (where setting = 'mql_goal_per_period')::integer as mql_goal_per_period,
        max(value) filter (where setting = 'sql_follow_up_hours')::numeric as sql_follow_up_hours,
        -- which evidence sets the stage (config/funnel.yml `evidence`): rules_and_crm | rules | crm
        coalesce(max(value) filter (where setting = 'mql_evidence'), 'rules_and_crm') as mql_evidence,
        coalesce(max(value) filter (where setting = 'sql_evidence'), 'rules_and_crm') as sql_evidence,
        -- rules are evidence from the start of this UTC day on (evidence.rules_from; null: always)
        {{ utc_midnight("max(value) filter (where setting = 'evidence_rules_from')::date") }} as evidence_rules_from_at,
        case max(value) filter (where setting = 'cohort_grain')
            when 'week' then interval '1 week' else interval '1 month'
        end as period_interval
    from settings
)

select * from final
