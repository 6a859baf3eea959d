with

source as (
    select * from {{ source('ops', 'crm_push_log') }}
),

final as (
    select
        push_id,
        run_id,
        contact_id,
        sql_at,
        dedupe_key,
        action,
        attempt,
        lower(status) as status,
        crm_object_id,
        http_status,
        reason,
        attempted_at
    from source
)

select * from final
