-- How fast owners follow up new SQLs: hours from sql_at to the owner's first call or meeting with the contact
-- in the CRM, against the agreed sla.sql_follow_up_hours.
with

contacts as (
    select * from {{ ref('dim_contacts') }}
),

activities as (
    select * from {{ ref('int_contact_crm_activities') }}
),

settings as (
    select * from {{ ref('int_funnel_settings') }}
),

run_interval as (
    select * from {{ ref('int_run_interval') }}
),

sqls as (
    select contacts.*
    from contacts
    cross join run_interval
    where contacts.sql_at < run_interval.interval_end_at
),

first_follow_ups as (
    {{ first_owner_activity('sqls', 'sql_at') }}
),

outcomes as (
    -- met: at or before the due time; late: after it; never: the due time passed with none; pending: still due
    select
        sqls.contact_id,
        first_follow_ups.activity_at as first_follow_up_at,
        first_follow_ups.activity_type as first_follow_up_type,
        case
            when first_follow_ups.activity_at
                <= sqls.sql_at + make_interval(secs => settings.sql_follow_up_hours * 3600) then 'met'
            when first_follow_ups.activity_at is not null then 'late'
            when sqls.sql_at + make_interval(secs => settings.sql_follow_up_hours * 3600)
                < run_interval.interval_end_at then 'never'
            else 'pending'
        end as follow_up_outcome
    from sqls
    cross join settings
    cross join run_interval
    left join first_follow_ups on sqls.contact_id = first_follow_ups.contact_id
),

final as (
    select
        sqls.contact_id,
        sqls.owner_id,
        sqls.sql_at,
        sqls.sql_evidence_source,
        settings.sql_follow_up_hours as sla_hours,
        sqls.sql_at + make_interval(secs => settings.sql_follow_up_hours * 3600) as follow_up_due_at,
        outcomes.first_follow_up_at,
        outcomes.first_follow_up_type,
        round((extract(epoch from outcomes.first_follow_up_at - sqls.sql_at) / 3600.0)::numeric, 2)
            as hours_to_follow_up,
        -- the SLA's verdict: late and never are both missed
        case when outcomes.follow_up_outcome in ('late', 'never') then 'missed' else outcomes.follow_up_outcome end
            as sla_status,
        outcomes.follow_up_outcome,
        settings.definition_version
    from sqls
    cross join settings
    inner join outcomes on sqls.contact_id = outcomes.contact_id
)

select
    *,
    sla_status = 'met' as is_sla_met
from final
