{{ config(pre_hook=["{{ changes_read(attribution_log(), after=['int_sessions_sessionized', 'int_contact_content_days']) }}",
                    "{{ visitor_rows_retract('contact_id') }}"],
          post_hook="{{ changes_applied(attribution_log()) }}",
          **appended_table_config([{'columns': ['contact_id'], 'unique': true}])) }}
{%- set whole = rebuilds_whole(attribution_log()) %}
-- Per contact, from its web history: first touch (the first session's source/medium), last page or track event,
-- and the top content it consumed (catalog titles by views and downloads). int_contact_touchpoints adds the CRM
-- activities. Incremental by contact (macros/visitor_changes.sql): a daily run recomputes the contacts whose events
-- the attribution changed: the first session and the last event by one index probe each, the top content from the
-- contact's content days (one row per title and day), not from every event it ever had.
with

sessions as (
    select * from ({{ changed_visitor_rows(ref('int_sessions_sessionized'), whole,
                                           first_by='started_at, session_id') }}) as held
    where contact_id is not null
),

events as (
    select * from ({{ changed_visitor_rows(ref('int_events_attributed'), whole,
                                           where="event_type in ('page', 'track')", first_by='event_at desc') }}) as attributed
    where contact_id is not null
),

content_days as (
    select * from ({{ changed_visitor_rows(ref('int_contact_content_days'), whole) }}) as held
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

last_event as (
    select contact_id, max(event_at) as last_event_at
    from events
    group by contact_id
),

content_counts as (
    select contact_id, content_title, sum(times) as times, max(last_at) as last_at
    from content_days
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
    select contact_id from last_event
),

final as (
    select
        contacts.contact_id,
        first_sessions.first_touch_at,
        first_sessions.first_touch_source,
        first_sessions.first_touch_medium,
        first_sessions.first_touch_campaign,
        last_event.last_event_at,
        top_content.top_content
    from contacts
    left join first_sessions on contacts.contact_id = first_sessions.contact_id
    left join last_event on contacts.contact_id = last_event.contact_id
    left join top_content on contacts.contact_id = top_content.contact_id
)

select * from final
