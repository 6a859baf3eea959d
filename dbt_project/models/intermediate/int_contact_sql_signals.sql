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
    select facts.*
    from facts
    inner join lists
        on lists.list_name = 'sql_signals'
        and lists.value = facts.feature
    cross join settings
    where facts.occurred_at >= coalesce(settings.evidence_rules_from_at, '-infinity')
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
