with

source as (
    select * from {{ source('ops', 'crm_push_acknowledged') }}
),

final as (
    select
        dedupe_key,
        contact_id,
        acknowledged_at,
        outcome,
        action,
        crm_object_id,
        reason
    from source
)

select * from final
