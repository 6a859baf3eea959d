-- Stages our rules assign, per contact: the first day its score reached the MQL threshold with at least the
-- minimum fit score (before any disqualification), and the first day a disqualifying negative rule fired, with
-- that day's score details. int_contact_score_first_days finds the days and their details incrementally; this
-- model only applies the order between them.
with

first_days as (
    select * from {{ ref('int_contact_score_first_days') }}
),

stage_days as (
    -- the first MQL day counts only before the first disqualification (the first MQL day at all: if it is not
    -- before the disqualification, no later one is)
    select
        *,
        first_mql_date < coalesce(disqualified_date, 'infinity'::date) as mql_before_disqualification
    from first_days
    where first_mql_date is not null or disqualified_date is not null
),

final as (
    select
        contact_id,
        case when mql_before_disqualification then first_mql_date end as mql_date,
        case when mql_before_disqualification then mql_score end as mql_score,
        case when mql_before_disqualification then mql_fit_score end as mql_fit_score,
        case when mql_before_disqualification then mql_rule_ids end as mql_rule_ids,
        case when mql_before_disqualification then mql_rule_details end as mql_rule_details,
        disqualified_date,
        disqualifying_rule_ids
    from stage_days
)

select * from final
