with

stages as (
    select * from {{ ref('int_contact_stages_assigned') }}
),

settings as (
    select * from {{ ref('int_funnel_settings') }}
),

reached as (
    select
        stages.contact_id,
        reached.to_stage,
        reached.stage_order,
        reached.transitioned_at,
        reached.evidence_source,
        coalesce(reached.rule_ids, array[]::text[]) as rule_ids,
        reached.rule_details,
        reached.is_inferred
    from stages
    cross join lateral (
        values
            ('lead', 1, stages.lead_at, stages.lead_evidence_source, null::text[], null::jsonb,
                stages.lead_inferred),
            ('mql', 2, stages.mql_at, stages.mql_evidence_source, stages.mql_rule_ids, stages.mql_rule_details,
                stages.mql_inferred),
            ('sql', 3, stages.sql_at, stages.sql_evidence_source, stages.sql_rule_ids, null::jsonb,
                stages.sql_inferred),
            ('opportunity', 4, stages.opportunity_at, stages.opportunity_evidence_source, null::text[], null::jsonb,
                stages.opportunity_inferred),
            ('customer', 5, stages.customer_at, 'crm', null::text[], null::jsonb, false),
            ('disqualified', 6, stages.disqualified_at, stages.disqualified_evidence_source,
                stages.disqualified_rule_ids, null::jsonb, false),
            ('recycled', 7, stages.recycled_at, 'crm', null::text[], null::jsonb, false)
    ) as reached (to_stage, stage_order, transitioned_at, evidence_source, rule_ids, rule_details, is_inferred)
    where reached.transitioned_at is not null
),

final as (
    select
        md5(reached.contact_id || '|' || reached.to_stage) as transition_id,
        reached.contact_id,
        coalesce(
            lag(reached.to_stage) over (
                partition by reached.contact_id order by reached.transitioned_at, reached.stage_order
            ),
            'visitor'
        ) as from_stage,
        reached.to_stage,
        reached.transitioned_at,
        reached.evidence_source,
        reached.rule_ids,
        reached.rule_details,
        reached.is_inferred,
        settings.definition_version
    from reached
    cross join settings
)

select * from final
