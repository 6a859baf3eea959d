with

source as (
    select * from {{ source('crm', 'crm_meetings') }}
),

latest as (
    {{ latest_version('source') }}
),

final as (
    select
        record_id as meeting_id,
        {{ safe_timestamptz(prop('record', 'hs_timestamp')) }} as activity_at,
        upper({{ prop('record', 'hs_meeting_outcome') }}) as meeting_outcome,
        {{ prop('record', 'hs_meeting_title') }} as title,
        {{ prop('record', 'hubspot_owner_id') }} as owner_id,
        coalesce(
            {{ safe_timestamptz(prop('record', 'hs_createdate')) }},
            {{ safe_timestamptz("nullif(record ->> 'createdAt', '')") }}
        ) as created_at,
        coalesce({{ safe_timestamptz(prop('record', 'hs_lastmodifieddate')) }}, updated_at) as updated_at,
        {{ associated_ids('record', 'contacts') }} as contact_ids,
        archived as is_archived
    from latest
)

select * from final
