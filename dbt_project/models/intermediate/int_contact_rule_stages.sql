-- Stages our rules assign, per contact: the first day its score reached the MQL threshold with at least the
-- minimum fit score (before any disqualification), and the first day a disqualifying negative rule fired.
-- The first days come from int_contact_score_first_days (incremental: one pass over the recomputed days); only
-- those days' score rows are read again, by index, for their details. (Sorting every qualifying wide row for
-- `distinct on` took 42 s of a one-day build at 100,000 contacts; one aggregate pass over all days, 10 to 17 s.)
with

scores as not materialized (
    -- read twice, by day, for the details: not materialized, or PostgreSQL copies all 10 million wide rows into
    -- a work file first
    select * from {{ ref('int_contact_scores_daily') }}
),

first_days as (
    select * from {{ ref('int_contact_score_first_days') }}
),

stage_days as (
    -- the first MQL day counts only before the first disqualification (the first MQL day at all: if it is not
    -- before the disqualification, no later one is)
    select
        contact_id,
        case when first_mql_date < coalesce(disqualified_date, 'infinity'::date) then first_mql_date end as mql_date,
        disqualified_date
    from first_days
    where first_mql_date is not null or disqualified_date is not null
),

final as (
    select
        stage_days.contact_id,
        stage_days.mql_date,
        mql.score as mql_score,
        mql.fit_score as mql_fit_score,
        mql.rule_ids as mql_rule_ids,
        case when mql.contact_id is not null then
            jsonb_build_object('points', mql.rule_points, 'values', mql.rule_values)
        end as mql_rule_details,
        stage_days.disqualified_date,
        disqualified.disqualifying_rule_ids
    from stage_days
    left join scores as mql
        on stage_days.contact_id = mql.contact_id
        and stage_days.mql_date = mql.score_date
    left join scores as disqualified
        on stage_days.contact_id = disqualified.contact_id
        and stage_days.disqualified_date = disqualified.score_date
)

select * from final
