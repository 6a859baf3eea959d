-- The funnel stage dates of every contact, from our rules and from the CRM's record, with skipped stages inferred.
-- A stage's *_at is the first time the contact reached it, from whichever counted evidence came first:
--   crm          the CRM's record: the lifecycle-stage history (propertiesWithHistory.lifecyclestage, or a CSV
--                lifecycle-history export) and the stage-date properties (hs_lifecyclestage_<stage>_date, the
--                "Became a ... Date" export columns, hs_v2_date_entered_<stage>). handoff's own INTEGRATION writes
--                are not evidence, nor is a stage-date property of a stage the history shows handoff's integration
--                set at or before that date, or one within a minute of any integration write (HubSpot stamps the
--                dates of the stage the push sets and of the stages it skips), nor a date equal to a later stage's
--                date (HubSpot's fill-in for a skipped stage: the later stage infers it);
--   lead         the contact's creation in the CRM, or the CRM's earlier record of a lead/subscriber stage, or of
--                a later stage (a record migrated from an older CRM: lead_inferred);
--   mql          rules: greatest(start of the first day the MQL rule held, the CRM creation); crm: the CRM's
--                record of marketingqualifiedlead;
--   sql          rules: the first decision signal; crm: the CRM's record of a stage sql.crm_lifecycle_stages lists;
--   opportunity  a deal associated with the contact was created, or the CRM's record of opportunity;
--   customer     an associated deal closed won, or the CRM's record of customer;
--   evidence     config/funnel.yml `evidence` says, for mql and sql, which evidence counts: rules_and_crm (the
--                earlier; rules win a tie), rules, or crm; with `rules_from`, the rules count from that day on;
--   skipped      a later stage without an earlier one gives the earlier stage the later stage's time,
--                flagged *_inferred, its evidence source `inferred`;
--   disqualified a negative rule with `disqualify` (from evidence.rules_from on), or a rep's lead status the
--                definition lists;
--   recycled     a recycling lead status set at or after sql_at (sales sent the lead back to nurture).
with

contacts as (
    select * from {{ ref('int_contacts_enriched') }}
),

rule_stages as (
    select * from {{ ref('int_contact_rule_stages') }}
),

sql_signals as (
    select * from {{ ref('int_contact_sql_signals') }}
),

lifecycle_history as (
    select * from {{ ref('stg_crm__contact_lifecycle_history') }}
),

lead_status_history as (
    select * from {{ ref('stg_crm__contact_lead_status_history') }}
),

deals as (
    select * from {{ ref('stg_crm__deals') }}
),

deal_contacts as (
    select * from {{ ref('stg_crm__deal_contacts') }}
),

stage_dates as (
    select * from {{ ref('stg_crm__contact_stage_dates') }}
),

lists as (
    select * from {{ ref('funnel_lists') }}
),

settings as (
    select * from {{ ref('int_funnel_settings') }}
),

pushed as (
    -- the first time handoff's integration set each stage value (its push): not evidence
    select
        lifecycle_history.contact_id,
        lifecycle_history.lifecycle_stage_raw,
        min(lifecycle_history.changed_at) as first_pushed_at
    from lifecycle_history
    where lifecycle_history.source_type = 'INTEGRATION'
    group by lifecycle_history.contact_id, lifecycle_history.lifecycle_stage_raw
),

integration_writes as (
    -- every lifecycle write of handoff's integration, whatever the stage: HubSpot stamps the dates of the stages
    -- a write skips at the same moment
    select lifecycle_history.contact_id, lifecycle_history.changed_at
    from lifecycle_history
    where lifecycle_history.source_type = 'INTEGRATION'
),

stage_dates_ranked as (
    select
        stage_dates.*,
        case stage_dates.lifecycle_stage
            when 'lead' then 1 when 'mql' then 2 when 'sql' then 3 when 'opportunity' then 4 when 'customer' then 5
        end as stage_rank
    from stage_dates
),

crm_records as (
    -- every time the CRM records a contact entering a lifecycle stage value
    select
        lifecycle_history.contact_id,
        lifecycle_history.lifecycle_stage_raw,
        lifecycle_history.lifecycle_stage,
        lifecycle_history.changed_at as entered_at
    from lifecycle_history
    where coalesce(lifecycle_history.source_type, '') <> 'INTEGRATION'
        and lifecycle_history.changed_at is not null
    union all
    select
        stage_dates.contact_id,
        stage_dates.lifecycle_stage_raw,
        stage_dates.lifecycle_stage,
        stage_dates.entered_at
    from stage_dates_ranked as stage_dates
    left join pushed
        on stage_dates.contact_id = pushed.contact_id
        and stage_dates.lifecycle_stage_raw = pushed.lifecycle_stage_raw
    -- a date at or after (within a minute of) handoff's own first write of that stage may be the push's stamp
    where (pushed.first_pushed_at is null or stage_dates.entered_at < pushed.first_pushed_at - interval '1 minute')
        -- nor a date within a minute of any of handoff's writes: the stamp of a stage that write skipped
        and not exists (
            select 1
            from integration_writes
            where integration_writes.contact_id = stage_dates.contact_id
                and stage_dates.entered_at between integration_writes.changed_at - interval '1 minute'
                and integration_writes.changed_at + interval '1 minute'
        )
        -- a stage's date equal to a later stage's: HubSpot filled in the date of a stage the contact skipped; the
        -- later stage infers it (mql_inferred, sql_inferred ...). A rep's own change of that stage is in the history.
        and not exists (
            select 1
            from stage_dates_ranked as later
            where later.contact_id = stage_dates.contact_id
                and later.stage_rank > stage_dates.stage_rank
                and later.entered_at = stage_dates.entered_at
        )
),

crm_lifecycle as (
    select
        crm_records.contact_id,
        min(crm_records.entered_at) filter (where crm_records.lifecycle_stage = 'lead') as crm_lead_at,
        min(crm_records.entered_at) filter (where crm_records.lifecycle_stage = 'mql') as crm_mql_at,
        min(crm_records.entered_at) filter (
            where crm_records.lifecycle_stage_raw in (
                select value from lists where list_name = 'sql_crm_lifecycle_stages'
            )
        ) as crm_sql_at,
        min(crm_records.entered_at) filter (where crm_records.lifecycle_stage = 'opportunity')
            as crm_opportunity_at,
        min(crm_records.entered_at) filter (where crm_records.lifecycle_stage = 'customer') as crm_customer_at
    from crm_records
    group by crm_records.contact_id
),

deal_evidence as (
    select
        deal_contacts.contact_id,
        min(deals.created_at) as deal_created_at,
        min(coalesce(deals.closed_at, deals.updated_at)) filter (where deals.is_closed_won) as deal_won_at
    from deal_contacts
    inner join deals
        on deal_contacts.deal_id = deals.deal_id
    where not deals.is_archived
    group by deal_contacts.contact_id
),

crm_disqualified as (
    select distinct on (lead_status_history.contact_id)
        lead_status_history.contact_id,
        lead_status_history.changed_at as crm_disqualified_at,
        lead_status_history.lead_status as crm_disqualified_status
    from lead_status_history
    inner join lists
        on lists.list_name = 'disqualify_crm_lead_statuses'
        and lists.value = lead_status_history.lead_status
    order by lead_status_history.contact_id, lead_status_history.changed_at
),

recycle_statuses as (
    select lead_status_history.contact_id, lead_status_history.changed_at, lead_status_history.lead_status
    from lead_status_history
    inner join lists
        on lists.list_name = 'recycle_crm_lead_statuses'
        and lists.value = lead_status_history.lead_status
),

evidence as (
    select
        contacts.contact_id,
        contacts.lead_at as created_at,
        crm_lifecycle.crm_lead_at,
        settings.mql_evidence,
        settings.sql_evidence,
        settings.evidence_rules_from_at,
        case when rule_stages.mql_date is not null
            then greatest({{ utc_midnight('rule_stages.mql_date') }}, contacts.lead_at) end as rules_mql_at,
        rule_stages.mql_score,
        rule_stages.mql_rule_ids,
        rule_stages.mql_rule_details,
        case when sql_signals.first_signal_at is not null
            then greatest(sql_signals.first_signal_at, contacts.lead_at) end as rules_sql_at,
        sql_signals.signal_feature,
        crm_lifecycle.crm_mql_at,
        crm_lifecycle.crm_sql_at,
        least(crm_lifecycle.crm_opportunity_at, deal_evidence.deal_created_at) as direct_opportunity_at,
        least(crm_lifecycle.crm_customer_at, deal_evidence.deal_won_at) as customer_at,
        -- a disqualifying rule counts from evidence.rules_from on, as the MQL rule does
        case when rule_stages.disqualified_date is not null
                and {{ utc_midnight('rule_stages.disqualified_date') }}
                    >= coalesce(settings.evidence_rules_from_at, '-infinity')
            then greatest({{ utc_midnight('rule_stages.disqualified_date') }}, contacts.lead_at) end
            as rules_disqualified_at,
        rule_stages.disqualifying_rule_ids,
        crm_disqualified.crm_disqualified_at,
        crm_disqualified.crm_disqualified_status
    from contacts
    cross join settings
    left join rule_stages on contacts.contact_id = rule_stages.contact_id
    left join sql_signals on contacts.contact_id = sql_signals.contact_id
    left join crm_lifecycle on contacts.contact_id = crm_lifecycle.contact_id
    left join deal_evidence on contacts.contact_id = deal_evidence.contact_id
    left join crm_disqualified on contacts.contact_id = crm_disqualified.contact_id
),

counted as (
    -- the evidence the definition counts for mql and sql (config/funnel.yml `evidence`)
    select
        *,
        -- (and evidence.rules_from: the rules count from that day on; before it only the CRM's record)
        case when mql_evidence <> 'crm' and rules_mql_at >= coalesce(evidence_rules_from_at, '-infinity')
            then rules_mql_at end as counted_rules_mql_at,
        case when mql_evidence <> 'rules' then crm_mql_at end as counted_crm_mql_at,
        case when sql_evidence <> 'crm' and rules_sql_at >= coalesce(evidence_rules_from_at, '-infinity')
            then rules_sql_at end as counted_rules_sql_at,
        case when sql_evidence <> 'rules' then crm_sql_at end as counted_crm_sql_at
    from evidence
),

opportunities as (
    select
        *,
        least(direct_opportunity_at, customer_at) as opportunity_at,
        customer_at is not null and (direct_opportunity_at is null or direct_opportunity_at > customer_at)
            as opportunity_inferred,
        least(counted_rules_sql_at, counted_crm_sql_at) as direct_sql_at,
        least(counted_rules_mql_at, counted_crm_mql_at) as direct_mql_at
    from counted
),

sqls as (
    select
        *,
        least(direct_sql_at, opportunity_at) as sql_at,
        opportunity_at is not null and (direct_sql_at is null or direct_sql_at > opportunity_at) as sql_inferred
    from opportunities
),

mqls as (
    select
        *,
        least(direct_mql_at, sql_at) as mql_at,
        sql_at is not null and (direct_mql_at is null or direct_mql_at > sql_at) as mql_inferred
    from sqls
),

leads as (
    -- the CRM creation, or the CRM's earlier record of a lead stage; a later stage recorded before both (a record
    -- migrated from an older CRM) gives lead_at its time, lead_inferred
    select
        *,
        least(created_at, crm_lead_at, mql_at) as lead_at,  -- mql_at is the earliest of the later stages
        coalesce(mql_at < least(created_at, crm_lead_at), false) as lead_inferred,
        -- the rules set the stage (not inferred, and the rules' time is the stage's: rules win a tie)
        coalesce(not mql_inferred and counted_rules_mql_at = mql_at, false) as mql_by_rules,
        coalesce(not sql_inferred and counted_rules_sql_at = sql_at, false) as sql_by_rules
    from mqls
),

recycled as (
    select distinct on (mqls.contact_id)
        mqls.contact_id,
        recycle_statuses.changed_at as recycled_at,
        recycle_statuses.lead_status as recycled_status
    from leads as mqls
    inner join recycle_statuses
        on mqls.contact_id = recycle_statuses.contact_id
        and recycle_statuses.changed_at >= mqls.sql_at
    order by mqls.contact_id, recycle_statuses.changed_at
),

final as (
    select
        mqls.contact_id,
        mqls.lead_at,
        mqls.lead_inferred,
        case when mqls.lead_inferred then 'inferred' else 'crm' end as lead_evidence_source,
        mqls.mql_at,
        mqls.mql_inferred,
        -- rules, crm, or inferred (from the later stage); rules win a tie
        case
            when mqls.mql_at is null then null
            when mqls.mql_inferred then 'inferred'
            when mqls.mql_by_rules then 'rules'
            else 'crm'
        end as mql_evidence_source,
        case
            when mqls.mql_at is null or mqls.mql_inferred then null
            when mqls.mql_by_rules then mqls.mql_rule_ids
            else array['crm_lifecycle_stage']
        end as mql_rule_ids,
        case when mqls.mql_by_rules then mqls.mql_rule_details end as mql_rule_details,
        case when mqls.mql_by_rules then mqls.mql_score end as mql_score,
        mqls.sql_at,
        mqls.sql_inferred,
        case
            when mqls.sql_at is null then null
            when mqls.sql_inferred then 'inferred'
            when mqls.sql_by_rules then 'rules'
            else 'crm'
        end as sql_evidence_source,
        case
            when mqls.sql_at is null or mqls.sql_inferred then null
            when mqls.sql_by_rules then array['sql_signal.' || mqls.signal_feature]
            else array['crm_lifecycle_stage']
        end as sql_rule_ids,
        mqls.opportunity_at,
        mqls.opportunity_inferred,
        case
            when mqls.opportunity_at is null then null
            when mqls.opportunity_inferred then 'inferred'
            else 'crm'
        end as opportunity_evidence_source,
        mqls.customer_at,
        least(mqls.rules_disqualified_at, mqls.crm_disqualified_at) as disqualified_at,
        case
            when mqls.rules_disqualified_at is null and mqls.crm_disqualified_at is null then null
            when mqls.crm_disqualified_at is null or mqls.rules_disqualified_at <= mqls.crm_disqualified_at
                then 'rules'
            else 'crm'
        end as disqualified_evidence_source,
        case
            when mqls.rules_disqualified_at is null and mqls.crm_disqualified_at is null then null
            when mqls.crm_disqualified_at is null or mqls.rules_disqualified_at <= mqls.crm_disqualified_at
                then 'rule: ' || array_to_string(mqls.disqualifying_rule_ids, ', ')
            else 'crm lead status: ' || mqls.crm_disqualified_status
        end as disqualified_reason,
        case
            when mqls.crm_disqualified_at is null or mqls.rules_disqualified_at <= mqls.crm_disqualified_at
                then mqls.disqualifying_rule_ids
        end as disqualified_rule_ids,
        recycled.recycled_at,
        recycled.recycled_status
    from leads as mqls
    left join recycled on mqls.contact_id = recycled.contact_id
)

select
    *,
    case
        when customer_at is not null then 'customer'
        when disqualified_at is not null then 'disqualified'
        when recycled_at is not null and (opportunity_at is null or opportunity_at <= recycled_at) then 'recycled'
        when opportunity_at is not null then 'opportunity'
        when sql_at is not null then 'sql'
        when mql_at is not null then 'mql'
        else 'lead'
    end as current_stage
from final
