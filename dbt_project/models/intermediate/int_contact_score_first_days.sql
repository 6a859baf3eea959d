{{ config(
    materialized='incremental',
    incremental_strategy='delete+insert',
    unique_key='contact_id',
    unlogged=false,
    on_schema_change='fail',
    indexes=[{'columns': ['contact_id'], 'unique': true}],
    pre_hook=["{{ jit_off_for_daily_runs() }}", "{{ fix_recompute_start('as_of_date') }}"],
) }}
-- Per scored contact: the first day its daily score reached the MQL threshold with at least the minimum fit score,
-- and the first day a disqualifying rule fired (null when none yet), each with that day's score details.
-- int_contact_rule_stages turns them into stages.
-- Incremental: the days before a run's recomputed range do not change (as in every daily table), so a first day
-- before that range stands, with the details held for it, and one inside it is looked for again among the
-- recomputed days only: one pass over four days of scores instead of all 180. Only a first day found in the range
-- has its details read again, by index, from that day's score row: a few thousand rows written by this run, where
-- reading every contact's first-day row anew (int_contact_rule_stages did, 41,711 rows at 100,000 contacts) took
-- 11 to 72 s of a one-day build, one random read of the 7 GB scores table per row. as_of_date is the last scored
-- day the row has seen; the recomputed range starts from it like every daily table's (macros/incremental.sql), so
-- a skipped run widens it.
with

scores as (
    select contact_id, score_date, score, fit_score, disqualifying_rule_ids
    from {{ ref('int_contact_scores_daily') }}
    {% if recomputes_range() %}
    where score_date >= {{ recompute_start_date() }}
    {% endif %}
),

score_rows as not materialized (
    -- read twice, by index, for the first days' details
    select * from {{ ref('int_contact_scores_daily') }}
),

settings as (
    select * from {{ ref('int_funnel_settings') }}
),

first_days as (
    select
        scores.contact_id,
        min(scores.score_date) filter (
            where scores.score >= settings.mql_score_threshold and scores.fit_score >= settings.mql_min_fit_score
        ) as first_mql_date,
        min(scores.score_date) filter (where cardinality(scores.disqualifying_rule_ids) > 0) as disqualified_date,
        max(scores.score_date) as last_score_date
    from scores
    cross join settings
    group by scores.contact_id
),

{% if recomputes_range() %}
held as (
    -- the rows held so far; a first day before the range stands, with its details
    select
        *,
        first_mql_date < {{ recompute_start_date() }} as mql_held,
        disqualified_date < {{ recompute_start_date() }} as disqualified_held
    from {{ this }}
),

merged as (
    -- every contact held or scored now: a held first day before the range stands with its held details, else the
    -- range's first day, whose details are looked up (the *_lookup_date columns)
    select
        coalesce(held.contact_id, first_days.contact_id) as contact_id,
        case when held.mql_held then held.first_mql_date else first_days.first_mql_date end as first_mql_date,
        case when held.disqualified_held then held.disqualified_date else first_days.disqualified_date end
            as disqualified_date,
        case when held.mql_held then null else first_days.first_mql_date end as mql_lookup_date,
        case when held.disqualified_held then null else first_days.disqualified_date end as disqualified_lookup_date,
        case when held.mql_held then held.mql_score end as held_mql_score,
        case when held.mql_held then held.mql_fit_score end as held_mql_fit_score,
        case when held.mql_held then held.mql_rule_ids end as held_mql_rule_ids,
        case when held.mql_held then held.mql_rule_details end as held_mql_rule_details,
        case when held.disqualified_held then held.disqualifying_rule_ids end as held_disqualifying_rule_ids
    from held
    full join first_days on held.contact_id = first_days.contact_id
),
{% else %}
merged as (
    select
        contact_id,
        first_mql_date,
        disqualified_date,
        first_mql_date as mql_lookup_date,
        disqualified_date as disqualified_lookup_date,
        null::numeric as held_mql_score,
        null::numeric as held_mql_fit_score,
        null::text[] as held_mql_rule_ids,
        null::jsonb as held_mql_rule_details,
        null::text[] as held_disqualifying_rule_ids
    from first_days
),
{% endif %}

final as (
    -- a first day's details come from its score row when looked up, else from the held row (a score row always
    -- exists for a first day, and its score, fit score and rule lists are never null)
    select
        merged.contact_id,
        merged.first_mql_date,
        merged.disqualified_date,
        coalesce(mql.score, merged.held_mql_score) as mql_score,
        coalesce(mql.fit_score, merged.held_mql_fit_score) as mql_fit_score,
        coalesce(mql.rule_ids, merged.held_mql_rule_ids) as mql_rule_ids,
        case when mql.contact_id is not null
            then jsonb_build_object('points', mql.rule_points, 'values', mql.rule_values)
            else merged.held_mql_rule_details end as mql_rule_details,
        coalesce(disqualified.disqualifying_rule_ids, merged.held_disqualifying_rule_ids) as disqualifying_rule_ids,
        (select max(last_score_date) from first_days) as as_of_date
    from merged
    left join score_rows as mql
        on merged.mql_lookup_date = mql.score_date
        and merged.contact_id = mql.contact_id
    left join score_rows as disqualified
        on merged.disqualified_lookup_date = disqualified.score_date
        and merged.contact_id = disqualified.contact_id
)

select * from final
