-- One row per scoring rule of the funnel definition in force: does the rule predict sales, or only add volume?
-- The population is the MQLs of the cohorts whose outcome window has ended: the cohort period (conversion
-- .cohort_grain) plus conversion.sales_cycle_lag_periods more periods, over by the run's data interval end — the
-- cohort mart's complete cells at months_since_mql = the lag. The outcome is sales-side evidence that does not
-- depend on the definition: the contact reached an opportunity (a deal, or the CRM's record) before that window
-- ended. The window opens at the end of the contact's MQL day (the MQL rule judges the end-of-day score), so a rule
-- "fired before" when it scored on that day or earlier (fit rules: the contact's current attributes, as
-- everywhere); a contact already an opportunity by then has nothing left to predict and is left out.
-- Rates with and without the rule get a 95% Wilson interval, lift (rate with ÷ rate without) the log-ratio (Katz)
-- interval (macros/intervals.sql); lift and its interval are null below var('rule_lift_min_contacts') contacts in
-- either group, or with no outcome in one. Rebuilt whole every run, from each MQL's first day per rule
-- (int_contact_rule_first_days: one row per contact and rule, so the cost follows the contacts, not the days).
with

contacts as (
    select * from {{ ref('dim_contacts') }}
),

rule_first_days as (
    select * from {{ ref('int_contact_rule_first_days') }}
),

fit_rule_hits as (
    select * from {{ ref('int_contact_fit_rule_hits') }}
),

rules as (
    select * from {{ ref('funnel_rules') }}
),

settings as (
    select * from {{ ref('int_funnel_settings') }}
),

run_interval as (
    select * from {{ ref('int_run_interval') }}
),

mql_windows as (
    -- every MQL with its cohort period and outcome window: from the end of its MQL day to the end of the period
    -- sales_cycle_lag_periods after its cohort period
    select
        contacts.contact_id,
        date_trunc(settings.cohort_grain, contacts.mql_at at time zone 'UTC')::date as cohort_period,
        {{ utc_date('contacts.mql_at') }} as mql_date,
        {{ utc_midnight(utc_date('contacts.mql_at') ~ ' + 1') }} as window_opens_at,
        {{ period_end_at("date_trunc(settings.cohort_grain, contacts.mql_at at time zone 'UTC')::date",
                         'settings.sales_cycle_lag_periods + 1') }} as window_ends_at,
        contacts.opportunity_at
    from contacts
    cross join settings
    where contacts.mql_at is not null
),

mqls as (
    -- the MQLs of the cohorts whose outcome window ended by the interval end
    select mql_windows.*
    from mql_windows
    cross join run_interval
    where {{ period_is_complete('mql_windows.window_ends_at') }}
),

members as (
    -- the MQLs not yet an opportunity when the window opened, and whether they reached one before it ended
    select
        contact_id,
        mql_date,
        coalesce(opportunity_at < window_ends_at, false) as reached_opportunity
    from mqls
    where opportunity_at is null or opportunity_at >= window_opens_at
),

fired as (
    -- each member's rules that scored on its MQL day or before (behaviour, negative, derived) or that its
    -- attributes meet (fit)
    select members.contact_id, rule_first_days.rule_id
    from members
    inner join rule_first_days
        on members.contact_id = rule_first_days.contact_id
        and rule_first_days.first_score_date <= members.mql_date
    union
    select members.contact_id, fit_rule_hits.rule_id
    from members
    inner join fit_rule_hits
        on members.contact_id = fit_rule_hits.contact_id
),

counts as (
    -- per rule: the members it fired for, and of them those that reached an opportunity
    select
        fired.rule_id,
        count(*)::integer as contacts_with,
        count(*) filter (where members.reached_opportunity)::integer as outcomes_with
    from fired
    inner join members
        on fired.contact_id = members.contact_id
    group by fired.rule_id
),

totals as (
    select
        count(*)::integer as contacts,
        count(*) filter (where reached_opportunity)::integer as outcomes
    from members
),

cohorts as (
    select
        count(*)::integer as mqls,
        min(cohort_period) as first_cohort_period,
        max(cohort_period) as last_cohort_period
    from mqls
),

with_and_without as (
    -- the members the rule did not fire for are all the others
    select
        rules.rule_id,
        totals.contacts,
        coalesce(counts.contacts_with, 0) as contacts_with,
        coalesce(counts.outcomes_with, 0) as outcomes_with,
        totals.contacts - coalesce(counts.contacts_with, 0) as contacts_without,
        totals.outcomes - coalesce(counts.outcomes_with, 0) as outcomes_without
    from rules
    cross join totals
    left join counts
        on rules.rule_id = counts.rule_id
),

final as (
    select
        rules.rule_id,
        rules.rule_order,
        rules.kind as rule_kind,
        rules.feature,
        rules.points,
        cohorts.first_cohort_period,
        cohorts.last_cohort_period,
        settings.sales_cycle_lag_periods as outcome_lag_periods,
        cohorts.mqls,
        with_and_without.contacts,
        with_and_without.contacts_with,
        with_and_without.outcomes_with,
        with_and_without.contacts_without,
        with_and_without.outcomes_without,
        {{ var('rule_lift_min_contacts') }} as min_contacts,
        with_and_without.contacts_with >= {{ var('rule_lift_min_contacts') }}
            and with_and_without.contacts_without >= {{ var('rule_lift_min_contacts') }}
            and with_and_without.outcomes_with > 0
            and with_and_without.outcomes_without > 0 as is_lift_reported,
        settings.definition_version
    from rules
    inner join with_and_without
        on rules.rule_id = with_and_without.rule_id
    cross join cohorts
    cross join settings
)

select
    rule_id,
    rule_order,
    rule_kind,
    feature,
    points,
    first_cohort_period,
    last_cohort_period,
    outcome_lag_periods,
    mqls,
    contacts,
    contacts_with,
    outcomes_with,
    trim_scale(round((outcomes_with::double precision / nullif(contacts_with, 0))::numeric, 4)) as rate_with,
    trim_scale(round({{ wilson_bound('outcomes_with', 'contacts_with', -1) }}::numeric, 4)) as rate_with_lower,
    trim_scale(round({{ wilson_bound('outcomes_with', 'contacts_with', 1) }}::numeric, 4)) as rate_with_upper,
    contacts_without,
    outcomes_without,
    trim_scale(round((outcomes_without::double precision / nullif(contacts_without, 0))::numeric, 4)) as rate_without,
    trim_scale(round({{ wilson_bound('outcomes_without', 'contacts_without', -1) }}::numeric, 4)) as rate_without_lower,
    trim_scale(round({{ wilson_bound('outcomes_without', 'contacts_without', 1) }}::numeric, 4)) as rate_without_upper,
    case when is_lift_reported then trim_scale(round(
        ((outcomes_with::double precision / contacts_with) / (outcomes_without::double precision / contacts_without))
        ::numeric, 4)) end as lift,
    case when is_lift_reported then trim_scale(round(
        {{ katz_ratio_bound('outcomes_with', 'contacts_with', 'outcomes_without', 'contacts_without', -1) }}::numeric,
        4)) end as lift_lower,
    case when is_lift_reported then trim_scale(round(
        {{ katz_ratio_bound('outcomes_with', 'contacts_with', 'outcomes_without', 'contacts_without', 1) }}::numeric,
        4)) end as lift_upper,
    min_contacts,
    is_lift_reported,
    definition_version
from final
