{{ config(pre_hook=["{{ changes_read(attribution_log(), after=['int_sessions_sessionized', 'int_contact_content_days']) }}",
                    "{{ visitor_rows_retract('contact_id') }}"],
          post_hook="{{ changes_applied(attribution_log()) }}",
          **appended_table_config([{'columns': ['contact_id'], 'unique': true}])) }}
{%- set whole = rebuilds_whole(attribution_log()) %}
-- Per contact, from its web history: first touch (the first session's source/medium), last page or track event,
-- and the top content it consumed (catalog titles by views and downloads). int_contact_touchpoints adds the CRM
-- activities. Incremental by contact (macros/visitor_changes.sql): a daily run recomputes the contacts whose events
-- the attribution changed: the first session and the last event by one index probe each, the top content from the
-- contact's latest content day of each title (its running totals), not from every event or day it ever had.
with recursive

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

{%- if not whole %}

latest_titles as (
    -- a changed contact's latest content day of each title, one index probe per title: a skip scan down the
    -- (visitor_key, content_title, event_date) index, titles in descending order, not a read of every day the
    -- contact ever had
    select first_title.* from pg_temp.handoff_changes as changed
    cross join lateral (
        select held.* from {{ ref('int_contact_content_days') }} as held
        where held.visitor_key = changed.key
        order by held.content_title desc, held.event_date desc
        limit 1
    ) as first_title
    union all
    select next_title.* from latest_titles
    cross join lateral (
        select held.* from {{ ref('int_contact_content_days') }} as held
        where held.visitor_key = latest_titles.visitor_key and held.content_title < latest_titles.content_title
        order by held.content_title desc, held.event_date desc
        limit 1
    ) as next_title
),
{%- endif %}

content_counts as (
    -- per contact and title: its views and downloads (a latest day's running total) and the last of them
    {%- if whole %}
    select contact_id, content_title, sum(times) as times, max(last_at) as last_at
    from {{ ref('int_contact_content_days') }}
    group by contact_id, content_title
    {%- else %}
    select contact_id, content_title, times_to_date as times, last_at
    from latest_titles
    {%- endif %}
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
