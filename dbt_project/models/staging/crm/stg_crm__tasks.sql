with

source as (
    select * from {{ source('crm', 'crm_tasks') }}
),

latest as (
    {{ latest_version('source') }}
),

final as (
    select
        record_id as task_id,
        {{ prop('record', 'hs_task_subject') }} as subject,
        {{ prop('record', 'hs_task_status') }} as task_status,
        {{ prop('record', 'hs_task_type') }} as task_type,
        {{ prop('record', 'hubspot_owner_id') }} as owner_id,
        {{ prop('record', 'handoff_dedupe_key') }} as dedupe_key,
        {{ safe_timestamptz(prop('record', 'hs_timestamp')) }} as due_at,
        {{ safe_timestamptz("nullif(record ->> 'createdAt', '')") }} as created_at,
        updated_at,
        archived as is_archived
    from latest
)

select * from final
