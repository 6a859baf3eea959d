{{ config(**visitor_consumer_config('visitor_key', indexes=[
    {'columns': ['session_id'], 'unique': true}, {'columns': ['visitor_key']}, {'columns': ['_written_at']}])) }}
{%- set whole = visitor_changes_rebuild_whole(ref('int_events_attributed')) %}
-- Web sessions: a visitor's page views, split where the gap to the previous one exceeds
-- var('session_inactivity_minutes'). A visitor is the contact (all its stitched devices) or an anonymous device.
-- Server-side track events (email opens, social) are not visits and do not make sessions.
-- One sort of the page views by visitor and time does all the work: a session's first and last views are found by
-- the gaps either side, and every later step keeps that order (a session's views are consecutive; event_date,
-- the UTC day of event_at, only grows). Grouping the 9 million views of 100,000 contacts by session and joining
-- the groups back to their first views took twice as long.
-- Incremental by visitor (macros/visitor_changes.sql): a daily run re-sessionizes, from their whole history, only
-- the visitors whose events the attribution changed since this table last applied its change log.
with

events as (
    -- only the columns sessions use: the sort carries every column it is given
    select
        event_id, visitor_key, contact_id, event_at, event_date, known_date,
        page_path, referrer, utm_source, utm_medium, utm_campaign
    from {{ ref('int_events_attributed') }}
    where event_type = 'page'
        and visitor_key is not null
        {% if not whole %}
        and visitor_key in {{ changed_visitor_keys() }}
        {% endif %}
),

gaps as (
    select
        *,
        row_number() over by_visitor as view_index,
        coalesce(event_at - lag(event_at) over by_visitor
            > make_interval(mins => {{ var('session_inactivity_minutes') }}), true) as is_session_start,
        coalesce(lead(event_at) over by_visitor - event_at
            > make_interval(mins => {{ var('session_inactivity_minutes') }}), true) as is_session_end
    from events
    window by_visitor as (partition by visitor_key order by event_at, event_id)
),

session_edges as (
    -- each session's first view, and its last when that is another view: the last is the next edge
    select
        *,
        lead(event_at) over by_visitor as next_edge_at,
        lead(view_index) over by_visitor as next_edge_index
    from gaps
    where is_session_start or is_session_end
    window by_visitor as (partition by visitor_key order by event_at, event_id)
),

sessions as (
    select
        *,
        row_number() over by_visitor as session_index,
        case when is_session_end then event_at else next_edge_at end as ended_at,
        case when is_session_end then 1 else next_edge_index - view_index + 1 end as views,
        -- a repeat visit: the visitor already had a session on an earlier day
        event_date > first_value(event_date) over by_visitor as is_repeat_visit,
        event_date is distinct from lag(event_date) over by_visitor as is_first_session_of_day
    from session_edges
    where is_session_start
    window by_visitor as (partition by visitor_key order by event_at, event_id)
),

final as (
    select
        md5(visitor_key || '|' || event_id) as session_id,
        visitor_key,
        -- a visitor key is its contact's ('c:' || contact_id) or an anonymous device's (no contact)
        contact_id,
        session_index::integer as session_index,
        event_at as started_at,
        ended_at,
        event_date as session_date,
        known_date,
        views as pageviews,
        views as events,
        page_path as landing_page_path,
        referrer,
        utm_source,
        utm_medium,
        utm_campaign,
        coalesce(
            utm_source,
            nullif(split_part(split_part(referrer, '://', 2), '/', 1), ''),
            'direct'
        ) as traffic_source,
        coalesce(
            utm_medium,
            case when referrer is not null then 'referral' else 'none' end
        ) as traffic_medium,
        session_index = 1 as is_first_session,
        is_repeat_visit,
        is_first_session_of_day,
        transaction_timestamp() as _written_at
    from sessions
)

select * from final
