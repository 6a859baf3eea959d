-- Per contact: first touch (the first session's source/medium), last known activity, and the top content it
-- consumed (catalog titles by views and downloads).
with

sessions as (
    select * from {{ ref('int_sessions_sessionized') }}
    where contact_id is not null
),

events as (
    select * from {{ ref('int_events_attributed') }}
    where contact_id is not null
),

activities as (
    select * from {{ ref('int_contact_crm_activities') }}
),

first_sessions as (
    select distinct on (contact_id)
        contact_id,
        started_at as first_touch_at,
        traffic_source as first_touch_source,
        traffic_medium as first_touch_medium,
        utm_campaign as first_touch_campaign
    from sessions
    order by contact_id, started_at, session_id
),

last_activity as (
    select contact_id, max(occurred_at) as last_activity_at
    from (
        select contact_id, event_at as occurred_at from events where event_type in ('page', 'track')
        union all
        select contact_id, activity_at from activities
    ) as all_activity
    group by contact_id
),

content_counts as (
    select contact_id, content_title, count(*) as times, max(event_at) as last_at
    from events
    where content_title is not null
    group by contact_id, content_title
),

top_content as (
    select
        contact_id,
        string_agg(content_title, ' | ' order by times desc, last_at desc, content_title) as top_content
    from (
        select
            *,
            row_number() over (partition by contact_id order by times desc, last_at desc, content_title) as rank
        from content_counts
    ) as ranked
    where rank <= 3
    group by contact_id
),

contacts as (
    select contact_id from first_sessions
    union
    select contact_id from last_activity
),

final as (
    select
        contacts.contact_id,
        first_sessions.first_touch_at,
        first_sessions.first_touch_source,
        first_sessions.first_touch_medium,
        first_sessions.first_touch_campaign,
        first_sessions.first_touch_source || ' / ' || first_sessions.first_touch_medium as first_touch_channel,
        last_activity.last_activity_at,
        top_content.top_content
    from contacts
    left join first_sessions on contacts.contact_id = first_sessions.contact_id
    left join last_activity on contacts.contact_id = last_activity.contact_id
    left join top_content on contacts.contact_id = top_content.contact_id
)

select * from final
