with

source as (
    select * from {{ source('crm', 'crm_calls') }}
),

latest as (
    {{ latest_version('source') }}
),

final as (
    select
        record_id as call_id,
        {{ safe_timestamptz(prop('record', 'hs_timestamp')) }} as activity_at,
        upper({{ prop('record', 'hs_call_direction') }}) as call_direction,
        {{ prop('record', 'hs_call_disposition') }} as call_disposition,
        {{ prop('record', 'hs_call_title') }} as title,
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
