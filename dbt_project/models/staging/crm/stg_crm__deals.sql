with

source as (
    select * from {{ source('crm', 'crm_deals') }}
),

latest as (
    {{ latest_version('source') }}
),

final as (
    select
        record_id as deal_id,
        {{ prop('record', 'dealname') }} as deal_name,
        {{ prop('record', 'pipeline') }} as pipeline,
        {{ stage_value(prop('record', 'dealstage')) }} as deal_stage,
        {{ safe_numeric(prop('record', 'amount')) }} as amount,
        {{ prop('record', 'hubspot_owner_id') }} as owner_id,
        coalesce(
            {{ safe_timestamptz(prop('record', 'createdate')) }},
            {{ safe_timestamptz("nullif(record ->> 'createdAt', '')") }}
        ) as created_at,
        {{ safe_timestamptz(prop('record', 'closedate')) }} as closed_at,
        {{ stage_value(prop('record', 'dealstage')) }} = 'closedwon' as is_closed_won,
        {{ stage_value(prop('record', 'dealstage')) }} = 'closedlost' as is_closed_lost,
        coalesce({{ safe_timestamptz(prop('record', 'hs_lastmodifieddate')) }}, updated_at) as updated_at,
        archived as is_archived
    from latest
)

select * from final
