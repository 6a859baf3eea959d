with

source as (
    select * from {{ source('analytics', 'analytics_events') }}
),

latest as (
    -- a message is unique (Segment messageId); a re-delivered or re-loaded message keeps its latest copy
    select distinct on (message_id) *
    from source
    order by message_id, _loaded_at desc, _line desc
),

final as (
    select
        message_id as event_id,
        lower(event_type) as event_type,
        event_name,
        nullif(anonymous_id, '') as anonymous_id,
        nullif(user_id, '') as user_id,
        event_at,
        received_at,
        {{ utc_date('event_at') }} as event_date,
        nullif(
            split_part(coalesce(
                nullif(record -> 'context' -> 'page' ->> 'path', ''),
                nullif(record -> 'properties' ->> 'path', '')
            ), '?', 1),
            ''
        ) as page_path,
        nullif(split_part(record -> 'properties' ->> 'asset_path', '?', 1), '') as asset_path,
        nullif(record -> 'properties' ->> 'form_id', '') as form_id,
        nullif(coalesce(record -> 'context' -> 'page' ->> 'referrer', record -> 'properties' ->> 'referrer'), '')
            as referrer,
        lower(nullif(record -> 'context' -> 'campaign' ->> 'source', '')) as utm_source,
        lower(nullif(record -> 'context' -> 'campaign' ->> 'medium', '')) as utm_medium,
        nullif(record -> 'context' -> 'campaign' ->> 'name', '') as utm_campaign,
        lower(btrim(nullif(coalesce(
            record -> 'traits' ->> 'email', record -> 'context' -> 'traits' ->> 'email'
        ), ''))) as traits_email,
        _loaded_at
    from latest
)

select * from final
