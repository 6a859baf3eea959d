with

contacts as (
    select * from {{ ref('int_contacts_enriched') }}
),

stages as (
    select * from {{ ref('int_contact_stages_assigned') }}
),

touchpoints as (
    select * from {{ ref('int_contact_touchpoints') }}
),

scores as (
    select * from {{ ref('int_contact_scores_daily') }}
),

run_interval as (
    select * from {{ ref('int_run_interval') }}
),

settings as (
    select * from {{ ref('int_funnel_settings') }}
),

current_scores as (
    -- the interval end's scores: one day, read by the (score_date, contact_id) index (a join to run_interval was
    -- planned as a scan of every day)
    select scores.contact_id, scores.score, scores.fit_score, scores.engagement_score
    from scores
    where scores.score_date = (select run_interval.interval_end_date from run_interval)
),

final as (
    select
        contacts.contact_id,
        contacts.crm_contact_id,
        contacts.email_hash,
        contacts.email_domain_type,
        contacts.company_id,
        contacts.persona,
        contacts.industry,
        contacts.company_size_band,
        contacts.country,
        contacts.original_source,
        contacts.original_source_detail,
        contacts.owner_id,
        stages.current_stage,
        coalesce(stages.lead_at, contacts.lead_at) as lead_at,
        stages.mql_at,
        coalesce(stages.mql_inferred, false) as mql_inferred,
        stages.mql_evidence_source,
        stages.sql_at,
        coalesce(stages.sql_inferred, false) as sql_inferred,
        stages.sql_evidence_source,
        stages.opportunity_at,
        stages.customer_at,
        stages.disqualified_at is not null as is_disqualified,
        stages.disqualified_at,
        stages.disqualified_reason,
        stages.recycled_at is not null as is_recycled,
        stages.recycled_at,
        coalesce(current_scores.score, 0) as current_score,
        coalesce(current_scores.fit_score, 0) as current_fit_score,
        coalesce(current_scores.engagement_score, 0) as current_engagement_score,
        touchpoints.first_touch_at,
        touchpoints.first_touch_channel,
        touchpoints.last_activity_at,
        settings.definition_version
    from contacts
    cross join settings
    left join stages on contacts.contact_id = stages.contact_id
    left join touchpoints on contacts.contact_id = touchpoints.contact_id
    left join current_scores on contacts.contact_id = current_scores.contact_id
)

select * from final
