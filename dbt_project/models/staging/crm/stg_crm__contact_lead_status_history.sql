-- The lead-status (hs_lead_status) history of each contact: propertiesWithHistory.hs_lead_status when the CRM
-- sends it, else the current status stamped with the record's last modification (the best evidence we have).
with

source as (
    select * from {{ source('crm', 'crm_contacts') }}
),

latest as (
    {{ latest_version('source') }}
),

from_history as (
    select
        latest.record_id as contact_id,
        history.ordinality::integer as history_index,
        nullif(history.entry ->> 'value', '') as lead_status,
        {{ safe_timestamptz("nullif(history.entry ->> 'timestamp', '')") }} as changed_at,
        upper(nullif(history.entry ->> 'sourceType', '')) as source_type,
        true as is_from_history
    from latest
    cross join lateral jsonb_array_elements(latest.record -> 'propertiesWithHistory' -> 'hs_lead_status')
        with ordinality as history (entry, ordinality)
    where jsonb_typeof(latest.record -> 'propertiesWithHistory' -> 'hs_lead_status') = 'array'
),

from_current as (
    select
        record_id as contact_id,
        0 as history_index,
        {{ prop('record', 'hs_lead_status') }} as lead_status,
        coalesce({{ safe_timestamptz(prop('record', 'lastmodifieddate')) }}, updated_at) as changed_at,
        cast(null as text) as source_type,
        false as is_from_history
    from latest
    where {{ prop('record', 'hs_lead_status') }} is not null
        and jsonb_typeof(record -> 'propertiesWithHistory' -> 'hs_lead_status') is distinct from 'array'
),

final as (
    select * from from_history where lead_status is not null
    union all
    select * from from_current
)

select * from final
