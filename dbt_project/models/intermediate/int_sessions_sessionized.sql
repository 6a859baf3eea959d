{{ config(pre_hook=["{{ changes_read(attribution_log()) }}", "{{ session_resume_points() }}",
                    "{{ visitor_rows_retract('visitor_key', since='started_at') }}"],
          post_hook="{{ changes_applied(attribution_log()) }}",
          **appended_table_config([{'columns': ['session_id'], 'unique': true},
                                   {'columns': ['visitor_key', 'started_at']}, {'columns': ['_written_at']}])) }}
{%- set whole = rebuilds_whole(attribution_log()) %}
-- Web sessions: a visitor's page views, split where the gap to the previous one exceeds
-- var('session_inactivity_minutes'). A visitor is the contact (all its stitched devices) or an anonymous device.
-- Server-side track events (email opens, social) are not visits and do not make sessions.
-- One sort of the page views by visitor and time does all the work: a session's first and last views are found by
-- the gaps either side, and every later step keeps that order (a session's views are consecutive; event_date,
-- the UTC day of event_at, only grows). Grouping the 9 million views of 100,000 contacts by session and joining
-- the groups back to their first views took twice as long.
-- Incremental by visitor (macros/visitor_changes.sql): a daily run re-sessionizes only the visitors whose events
-- the attribution changed since this table last applied its change log, from the last session that starts at or
-- before their earliest changed event (session_resume_points: the numbering and flags carry on from the sessions
-- kept before it).
with

events as (
    -- only the columns sessions use: the sort carries every column it is given
    select
        event_id, visitor_key, contact_id, event_at, event_date, known_date,
        page_path, referrer, utm_source, utm_medium, utm_campaign
    from ({{ changed_visitor_rows(ref('int_events_attributed'), whole, since='event_at') }}) as attributed
    where event_type = 'page'
        and visitor_key is not null
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
        row_number() over by_visitor as sessions_here,
        case when is_session_end then event_at else next_edge_at end as ended_at,
        case when is_session_end then 1 else next_edge_index - view_index + 1 end as views,
        first_value(event_date) over by_visitor as first_date_here,
        lag(event_date) over by_visitor as previous_date_here
    from session_edges
    where is_session_start
    window by_visitor as (partition by visitor_key order by event_at, event_id)
),

numbered as (
    -- on an incremental run, after the visitor's sessions kept before the resume point
    select
        sessions.*,
        {%- if whole %}
        sessions_here as session_index,
        -- a repeat visit: the visitor already had a session on an earlier day
        event_date > first_date_here as is_repeat_visit,
        (event_date is distinct from previous_date_here) as is_first_session_of_day
        {%- else %}
        resumed.sessions_before + sessions_here as session_index,
        event_date > coalesce(resumed.first_session_date, first_date_here) as is_repeat_visit,
        (event_date is distinct from coalesce(previous_date_here, resumed.last_session_date))
            as is_first_session_of_day
        {%- endif %}
    from sessions
    {%- if not whole %}
    inner join pg_temp.handoff_session_resume as resumed on sessions.visitor_key = resumed.visitor_key
    {%- endif %}
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
    from numbered
)

select * from final
