-- Web sessions: a visitor's page views, split where the gap to the previous one exceeds
-- var('session_inactivity_minutes'). A visitor is the contact (all its stitched devices) or an anonymous device.
-- Server-side track events (email opens, social) are not visits and do not make sessions.
with

events as (
    select * from {{ ref('int_events_attributed') }}
    where event_type = 'page'
        and visitor_key is not null
),

gaps as (
    select
        *,
        case
            when lag(event_at) over by_visitor is null then 1
            when event_at - lag(event_at) over by_visitor
                > make_interval(mins => {{ var('session_inactivity_minutes') }}) then 1
            else 0
        end as is_session_start
    from events
    window by_visitor as (partition by visitor_key order by event_at, event_id)
),

numbered as (
    select
        *,
        sum(is_session_start) over (
            partition by visitor_key order by event_at, event_id rows unbounded preceding
        ) as session_index
    from gaps
),

sessions as (
    select
        visitor_key,
        session_index,
        min(contact_id) as contact_id,
        min(event_at) as started_at,
        max(event_at) as ended_at,
        count(*) filter (where event_type = 'page') as pageviews,
        count(*) as events
    from numbered
    group by visitor_key, session_index
),

session_starts as (
    select
        visitor_key,
        session_index,
        event_id as first_event_id,
        event_date,
        known_date,
        page_path as landing_page_path,
        referrer,
        utm_source,
        utm_medium,
        utm_campaign
    from numbered
    where is_session_start = 1
),

final as (
    select
        md5(sessions.visitor_key || '|' || session_starts.first_event_id) as session_id,
        sessions.visitor_key,
        sessions.contact_id,
        sessions.session_index::integer as session_index,
        sessions.started_at,
        sessions.ended_at,
        session_starts.event_date as session_date,
        session_starts.known_date,
        sessions.pageviews,
        sessions.events,
        session_starts.landing_page_path,
        session_starts.referrer,
        session_starts.utm_source,
        session_starts.utm_medium,
        session_starts.utm_campaign,
        coalesce(
            session_starts.utm_source,
            nullif(split_part(split_part(session_starts.referrer, '://', 2), '/', 1), ''),
            'direct'
        ) as traffic_source,
        coalesce(
            session_starts.utm_medium,
            case when session_starts.referrer is not null then 'referral' else 'none' end
        ) as traffic_medium,
        sessions.session_index = 1 as is_first_session,
        -- a repeat visit: the visitor already had a session on an earlier day
        session_starts.event_date > min(session_starts.event_date) over (partition by sessions.visitor_key)
            as is_repeat_visit,
        row_number() over (
            partition by sessions.visitor_key, session_starts.event_date order by sessions.session_index
        ) = 1 as is_first_session_of_day
    from sessions
    inner join session_starts
        on sessions.visitor_key = session_starts.visitor_key
        and sessions.session_index = session_starts.session_index
)

select * from final
