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
    select distinct on (sqls.contact_id)
        sqls.contact_id,
        activities.activity_at as first_follow_up_at,
        activities.activity_type as first_follow_up_type,
        activities.owner_id as follow_up_owner_id
    from sqls
    cross join run_interval
    inner join activities
        on sqls.contact_id = activities.contact_id
        and activities.activity_at >= sqls.sql_at
        and activities.activity_at < run_interval.interval_end_at
        -- the contact's owner (any rep when the contact has no owner)
        and (sqls.owner_id is null or activities.owner_id = sqls.owner_id)
    order by sqls.contact_id, activities.activity_at
),

final as (
    select
        sqls.contact_id,
        sqls.owner_id,
        sqls.sql_at,
        sqls.sql_evidence_source,
        settings.sql_follow_up_hours as sla_hours,
        sqls.sql_at + make_interval(secs => settings.sql_follow_up_hours * 3600) as follow_up_due_at,
        first_follow_ups.first_follow_up_at,
        first_follow_ups.first_follow_up_type,
        round((extract(epoch from first_follow_ups.first_follow_up_at - sqls.sql_at) / 3600.0)::numeric, 2)
            as hours_to_follow_up,
        case
            when first_follow_ups.first_follow_up_at
                <= sqls.sql_at + make_interval(secs => settings.sql_follow_up_hours * 3600) then 'met'
            when first_follow_ups.first_follow_up_at is not null then 'missed'
            when sqls.sql_at + make_interval(secs => settings.sql_follow_up_hours * 3600)
                < run_interval.interval_end_at then 'missed'
            else 'pending'
        end as sla_status,
        settings.definition_version
    from sqls
    cross join settings
    cross join run_interval
    left join first_follow_ups on sqls.contact_id = first_follow_ups.contact_id
)

select
    *,
    sla_status = 'met' as is_sla_met
from final
