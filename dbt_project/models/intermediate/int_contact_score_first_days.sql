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
-- and the first day a disqualifying rule fired (null when none yet). int_contact_rule_stages turns them into stages.
-- Incremental: the days before a run's recomputed range do not change (as in every daily table), so a first day
-- before that range stands, and one inside it is looked for again among the recomputed days only: one pass over
-- four days of scores instead of all 180. as_of_date is the last scored day the row has seen; the recomputed range
-- starts from it like every daily table's (macros/incremental.sql), so a skipped run widens it.
with

scores as (
    select contact_id, score_date, score, fit_score, disqualifying_rule_ids
    from {{ ref('int_contact_scores_daily') }}
    {% if recomputes_range() %}
    where score_date >= {{ recompute_start_date() }}
    {% endif %}
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
merged as (
    -- every contact held or scored now: a held first day before the range stands, else the range's
    select
        coalesce(held.contact_id, first_days.contact_id) as contact_id,
        case when held.first_mql_date < {{ recompute_start_date() }} then held.first_mql_date
            else first_days.first_mql_date end as first_mql_date,
        case when held.disqualified_date < {{ recompute_start_date() }} then held.disqualified_date
            else first_days.disqualified_date end as disqualified_date
    from {{ this }} as held
    full join first_days on held.contact_id = first_days.contact_id
),
{% else %}
merged as (
    select contact_id, first_mql_date, disqualified_date from first_days
),
{% endif %}

final as (
    select
        merged.contact_id,
        merged.first_mql_date,
        merged.disqualified_date,
        (select max(last_score_date) from first_days) as as_of_date
    from merged
)

select * from final
