{{ config(pre_hook="{{ identity_changes_prepare() }}",
          post_hook="{{ applied_inputs_record('handoff_identity', identity_inputs()) }}",
          **appended_table_config([{'columns': ['anonymous_id'], 'unique': true}, {'columns': ['contact_id']}])) }}
-- anonymous_id -> contact: the first contact a device was identified as (an event carrying the CRM contact id
-- as userId, or an identify call whose traits email matches a contact). Everything the device did, before and
-- after, belongs to that contact.
-- Incremental (macros/visitor_changes.sql): a run stitches again only the devices with evidence in new load batches
-- or naming a CRM contact that came, went or changed its email, archived flag or creation time, and the devices
-- stitched to such a contact, from all their evidence; it keeps a copy of the contacts and batches it applied.
with

events as (
    select * from {{ ref('stg_analytics__events') }}
    {% if is_incremental() %}
    where anonymous_id in (select anonymous_id from pg_temp.handoff_identity_devices)
    {% endif %}
),

contacts as (
    select * from {{ ref('stg_crm__contacts') }}
),

contacts_by_email as (
    select distinct on (email) email, contact_id
    from contacts
    where email is not null and not is_archived
    order by email, created_at, contact_id
),

evidence as (
    select
        events.anonymous_id,
        coalesce(by_user.contact_id, by_email.contact_id) as contact_id,
        events.received_at as identified_at,
        events.event_id
    from events
    left join contacts as by_user
        on events.user_id = by_user.contact_id
    left join contacts_by_email as by_email
        on events.user_id is null
        and events.event_type = 'identify'
        and events.traits_email = by_email.email
    where events.anonymous_id is not null
        and (events.user_id is not null or events.event_type = 'identify')
),

final as (
    select distinct on (anonymous_id)
        anonymous_id,
        contact_id,
        identified_at,
        event_id as identified_by_event_id
    from evidence
    where contact_id is not null
    order by anonymous_id, identified_at, event_id
)

select * from final
