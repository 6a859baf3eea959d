-- Stages our rules assign, per contact: the first day its score reached the MQL threshold with at least the
-- minimum fit score (before any disqualification), and the first day a disqualifying negative rule fired.
with

scores as (
    select * from {{ ref('int_contact_scores_daily') }}
),

settings as (
    select * from {{ ref('int_funnel_settings') }}
),

first_disqualified as (
    select distinct on (contact_id)
        contact_id,
        score_date as disqualified_date,
        disqualifying_rule_ids
    from scores
    where cardinality(disqualifying_rule_ids) > 0
    order by contact_id, score_date
),

first_mql as (
    select distinct on (scores.contact_id)
        scores.contact_id,
        scores.score_date as mql_date,
        scores.score as mql_score,
        scores.fit_score as mql_fit_score,
        scores.rule_ids as mql_rule_ids,
        jsonb_build_object('points', scores.rule_points, 'values', scores.rule_values) as mql_rule_details
    from scores
    cross join settings
    left join first_disqualified
        on scores.contact_id = first_disqualified.contact_id
    where scores.score >= settings.mql_score_threshold
        and scores.fit_score >= settings.mql_min_fit_score
        and (first_disqualified.disqualified_date is null or scores.score_date < first_disqualified.disqualified_date)
    order by scores.contact_id, scores.score_date
),

final as (
    select
        coalesce(first_mql.contact_id, first_disqualified.contact_id) as contact_id,
        first_mql.mql_date,
        first_mql.mql_score,
        first_mql.mql_fit_score,
        first_mql.mql_rule_ids,
        first_mql.mql_rule_details,
        first_disqualified.disqualified_date,
        first_disqualified.disqualifying_rule_ids
    from first_mql
    full outer join first_disqualified
        on first_mql.contact_id = first_disqualified.contact_id
)

select * from final
