{{ config(
    materialized='incremental',
    incremental_strategy='append',
    on_schema_change='fail',
    tags=['definition_lab'],
    pre_hook=["{% if var('backtest', none) and is_incremental() %}delete from {{ this }}{% endif %}"],
) }}
-- The last backtest (`handoff funnel backtest CANDIDATE.yml`, docs/funnel.md "Changing the definition safely"): one
-- row per definition (current, candidate) × cohort period. The backtest's build (var('backtest')) routes the models
-- it rebuilds for the candidate to its own schema (generate_schema_name), so there ref() is the candidate's and
-- production() names the production relation, the current definition's. Built only in a backtest (its rows
-- replace the last one's); any other build, the daily DAG's included, keeps them as they are. Both definitions are cut by the current definition's cohort grain and headline lag, so their rows line up;
-- the outcomes (opportunity, customer) are the CRM's and the same for both.
{%- set backtest = var('backtest', none) %}
with

settings as (
    select * from {{ production(ref('int_funnel_settings'), 'intermediate') }}
),

run_interval as (
    select * from {{ ref('int_run_interval') }}
),

current_transitions as (
    select * from {{ production(ref('fct_stage_transitions'), 'marts') }}
),

definitions as (
    select 'current' as definition, settings.definition_version, settings.definition_name,
        settings.mql_goal_per_period
    from settings
    {%- if backtest %}
    union all
    select 'candidate' as definition, candidate.definition_version, candidate.definition_name,
        candidate.mql_goal_per_period
    from {{ ref('int_funnel_settings') }} as candidate
    {%- endif %}
),

transitions as (
    select 'current' as definition, current_transitions.* from current_transitions
    {%- if backtest %}
    union all
    select 'candidate' as definition, candidate.*
    from {{ ref('fct_stage_transitions') }} as candidate
    {%- endif %}
),

per_contact as (
    -- each contact's first time at each stage, per definition; what happens at or after the interval end is unknown
    select
        transitions.definition,
        transitions.contact_id,
        min(transitions.transitioned_at) filter (where transitions.to_stage = 'mql') as mql_at,
        bool_or(transitions.is_inferred) filter (where transitions.to_stage = 'mql') as mql_inferred,
        min(transitions.transitioned_at) filter (where transitions.to_stage = 'sql') as sql_at,
        min(transitions.evidence_source) filter (where transitions.to_stage = 'sql') as sql_evidence_source,
        min(transitions.transitioned_at) filter (where transitions.to_stage = 'opportunity') as opportunity_at,
        min(transitions.transitioned_at) filter (where transitions.to_stage = 'customer') as customer_at
    from transitions
    cross join run_interval
    where transitions.transitioned_at < run_interval.interval_end_at
    group by 1, 2
),

flagged as (
    -- flagged: an MQL the definition (its rules or the CRM's record) set, not one inferred from a later stage
    select definition, contact_id, mql_at
    from per_contact
    where mql_at is not null and not mql_inferred
),

members as (
    select
        per_contact.*,
        date_trunc(settings.cohort_grain, per_contact.mql_at at time zone 'UTC')::date as cohort_period,
        {{ period_end_at("date_trunc(settings.cohort_grain, per_contact.mql_at at time zone 'UTC')::date",
                         'settings.sales_cycle_lag_periods + 1') }} as window_end_at,
        not per_contact.mql_inferred and not exists (
            select 1 from flagged as other
            where other.contact_id = per_contact.contact_id and other.definition = 'current'
        ) as is_added
    from per_contact
    cross join settings
    where per_contact.mql_at is not null
),

dropped as (
    -- the current definition's flagged MQLs that the candidate never flags, in their current cohort period
    select
        date_trunc(settings.cohort_grain, current_flagged.mql_at at time zone 'UTC')::date as cohort_period,
        count(*)::integer as mqls_dropped
    from flagged as current_flagged
    cross join settings
    where current_flagged.definition = 'current'
        {%- if backtest %}
        and not exists (
            select 1 from flagged as candidate
            where candidate.contact_id = current_flagged.contact_id and candidate.definition = 'candidate'
        )
        {%- else %}
        and false
        {%- endif %}
    group by 1
),

cohorts as (
    select
        members.definition,
        members.cohort_period,
        count(*)::integer as mqls,
        count(*) filter (where not members.mql_inferred)::integer as mqls_flagged,
        count(*) filter (where members.definition = 'candidate' and members.is_added)::integer as mqls_added,
        count(*) filter (where members.sql_at < members.window_end_at)::integer as sqls_within_lag,
        count(*) filter (
            where members.sql_at < members.window_end_at and members.sql_evidence_source = 'rules'
        )::integer as sqls_by_rules_within_lag,
        count(*) filter (where members.opportunity_at < members.window_end_at)::integer as opportunities_within_lag,
        count(*) filter (where members.customer_at < members.window_end_at)::integer as customers_within_lag,
        count(*) filter (
            where not members.mql_inferred and members.opportunity_at >= members.mql_at
                and members.opportunity_at < members.window_end_at
        )::integer as flagged_reaching_opportunity,
        percentile_cont(0.5) within group (
            order by extract(epoch from members.opportunity_at - members.mql_at) / 86400.0
        ) filter (
            where not members.mql_inferred and members.opportunity_at >= members.mql_at
                and members.opportunity_at < members.window_end_at
        ) as median_days_mql_to_opportunity
    from members
    group by 1, 2
),

opportunities as (
    -- opportunities opened per period (the CRM's, the same under both definitions), and of them those whose contact
    -- the definition had flagged as MQL at or before the opportunity
    select
        per_contact.definition,
        date_trunc(settings.cohort_grain, per_contact.opportunity_at at time zone 'UTC')::date as cohort_period,
        count(*)::integer as opportunities_opened,
        count(*) filter (
            where per_contact.mql_at <= per_contact.opportunity_at and not per_contact.mql_inferred
        )::integer as opportunities_flagged_before
    from per_contact
    cross join settings
    where per_contact.opportunity_at is not null
    group by 1, 2
),

periods as (
    select definition, cohort_period from cohorts
    union
    select definition, cohort_period from opportunities
),

final as (
    select
        periods.definition,
        definitions.definition_version,
        definitions.definition_name,
        periods.cohort_period,
        settings.cohort_grain,
        coalesce(cohorts.mqls, 0) as mqls,
        coalesce(cohorts.mqls_flagged, 0) as mqls_flagged,
        coalesce(cohorts.mqls_added, 0) as mqls_added,
        case when periods.definition = 'candidate' then coalesce(dropped.mqls_dropped, 0) else 0 end
            as mqls_dropped,
        coalesce(cohorts.sqls_within_lag, 0) as sqls_within_lag,
        coalesce(cohorts.sqls_by_rules_within_lag, 0) as sqls_by_rules_within_lag,
        coalesce(cohorts.opportunities_within_lag, 0) as opportunities_within_lag,
        coalesce(cohorts.customers_within_lag, 0) as customers_within_lag,
        coalesce(cohorts.flagged_reaching_opportunity, 0) as flagged_reaching_opportunity,
        round(cohorts.flagged_reaching_opportunity::numeric / nullif(cohorts.mqls_flagged, 0), 4) as mql_precision,
        coalesce(opportunities.opportunities_opened, 0) as opportunities_opened,
        coalesce(opportunities.opportunities_flagged_before, 0) as opportunities_flagged_before,
        round(opportunities.opportunities_flagged_before::numeric / nullif(opportunities.opportunities_opened, 0), 4)
            as opportunity_coverage,
        round(cohorts.median_days_mql_to_opportunity::numeric, 2) as median_days_mql_to_opportunity,
        definitions.mql_goal_per_period as mql_goal,
        round(coalesce(cohorts.mqls, 0)::numeric / nullif(definitions.mql_goal_per_period, 0), 4) as mqls_vs_goal,
        settings.sales_cycle_lag_periods as lag_periods,
        {{ period_end_at('periods.cohort_period', 'settings.sales_cycle_lag_periods + 1') }} as outcome_window_end_at,
        {{ period_is_complete(period_end_at('periods.cohort_period', 'settings.sales_cycle_lag_periods + 1')) }}
            as is_complete,
        {{ "'" ~ backtest['since'] ~ "'::date" if backtest and backtest['since'] else 'null::date' }}
            as backtest_since,
        {{ "'" ~ backtest['until'] ~ "'::date" if backtest and backtest['until'] else 'null::date' }}
            as backtest_until,
        transaction_timestamp() as backtested_at
    from periods
    inner join definitions on periods.definition = definitions.definition
    cross join settings
    cross join run_interval
    left join cohorts
        on periods.definition = cohorts.definition and periods.cohort_period = cohorts.cohort_period
    left join opportunities
        on periods.definition = opportunities.definition and periods.cohort_period = opportunities.cohort_period
    left join dropped on periods.cohort_period = dropped.cohort_period
)

select * from final
where
    {%- if not backtest %}
    false  -- no backtest asked: the rows of the last one stay
    {%- else %}
    true
    {%- if backtest['since'] %}
    and cohort_period >= date_trunc(cohort_grain, '{{ backtest["since"] }}'::date)::date
    {%- endif %}
    {%- if backtest['until'] %}
    and cohort_period <= '{{ backtest["until"] }}'::date
    {%- endif %}
    {%- endif %}
