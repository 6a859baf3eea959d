-- The first decision signal (the definition's sql.signals: demo / pricing / audit request, meeting booked ...)
-- of each contact that sent one, counting from the funnel's evidence.rules_from cut-over day when it has one (a
-- signal before it is not the rules' evidence, a later one still is).
with

facts as (
    select * from {{ ref('int_contact_engagement_facts') }}
),

lists as (
    select * from {{ ref('funnel_lists') }}
),

settings as (
    select * from {{ ref('int_funnel_settings') }}
),

signals as (
    -- each signal feature's facts, read on the facts' (feature, known_date) index: a few thousand of the 8.7 million
    -- facts at tier M, which a join on the feature list read whole
    select signal_facts.*
    from lists
    cross join settings
    cross join lateral (
        select * from facts
        where facts.feature = lists.value
            and facts.occurred_at >= coalesce(settings.evidence_rules_from_at, '-infinity')
        -- offset 0 keeps the planner from flattening the read into a join
        offset 0  -- noqa: AM09
    ) as signal_facts
    where lists.list_name = 'sql_signals'
),

final as (
    select distinct on (contact_id)
        contact_id,
        occurred_at as first_signal_at,
        feature as signal_feature,
        source_id as signal_source_id
    from signals
    order by contact_id, occurred_at, feature
)

select * from final
