-- The lifecycle-stage history of each contact (propertiesWithHistory.lifecyclestage), from the latest
-- version of each contact record only.
with

source as (
    select * from {{ source('crm', 'crm_contacts') }}
),

latest as (
    {{ latest_version('source') }}
),

unnested as (
    select
        latest.record_id as contact_id,
        history.entry,
        history.ordinality
    from latest
    cross join lateral jsonb_array_elements(
        case when jsonb_typeof(latest.record -> 'propertiesWithHistory' -> 'lifecyclestage') = 'array'
            then latest.record -> 'propertiesWithHistory' -> 'lifecyclestage'
            else '[]'::jsonb end
    ) with ordinality as history (entry, ordinality)
),

final as (
    select
        contact_id,
        ordinality::integer as history_index,
        {{ stage_value("entry ->> 'value'") }} as lifecycle_stage_raw,
        {{ map_lifecycle_stage("nullif(entry ->> 'value', '')") }} as lifecycle_stage,
        {{ safe_timestamptz("nullif(entry ->> 'timestamp', '')") }} as changed_at,
        upper(nullif(entry ->> 'sourceType', '')) as source_type,
        nullif(entry ->> 'sourceId', '') as source_id,
        nullif(entry ->> 'updatedByUserId', '') as changed_by_user_id
    from unnested
)

select * from final
