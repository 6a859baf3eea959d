with

source as (
    select * from {{ source('crm', 'crm_owners') }}
),

latest as (
    {{ latest_version('source') }}
),

final as (
    select
        record_id as owner_id,
        nullif(record ->> 'userId', '') as owner_user_id,
        md5(lower(nullif(record ->> 'email', ''))) as owner_email_hash,
        concat_ws(' ', nullif(record ->> 'firstName', ''), nullif(record ->> 'lastName', '')) as owner_name,
        (
            select team ->> 'name'
            from jsonb_array_elements(
                case when jsonb_typeof(record -> 'teams') = 'array' then record -> 'teams' else '[]'::jsonb end
            ) as team
            order by (team ->> 'primary')::boolean desc nulls last
            limit 1
        ) as team_name,
        {{ safe_timestamptz("nullif(record ->> 'createdAt', '')") }} as created_at,
        updated_at,
        coalesce(archived, false) or coalesce((record ->> 'archived')::boolean, false) as is_archived
    from latest
)

select * from final
