{{ config(pre_hook=["{{ changes_read(attribution_log(), after=['int_sessions_sessionized']) }}",
                    "{% if is_incremental() %}delete from {{ this }} where feature = 'meetings'{% endif %}",
                    "{{ visitor_rows_retract('contact_id', since='occurred_at', since_day='event_date') }}"],
          post_hook="{{ changes_applied(attribution_log()) }}",
          **appended_table_config([{'columns': ['contact_id', 'event_date']}, {'columns': ['known_date']},
                                   {'columns': ['feature', 'known_date']}, {'columns': ['_written_at']}])) }}
{%- set whole = rebuilds_whole(attribution_log()) %}
-- The behaviour vocabulary as long facts: one row per contact × source record × feature it counts for, with
-- the day it happened (event_date) and the day it was known (known_date). The daily models pivot these.
-- Incremental by contact (macros/visitor_changes.sql): a daily run recomputes the web facts of the contacts whose
-- events the attribution changed, from their earliest changed event on (after sessions has applied the same
-- changes: a session that starts before that event keeps its facts), and every meeting fact (a few thousand rows
-- from the CRM, which has no change log of its own here).
with

events as (
    select * from ({{ changed_visitor_rows(ref('int_events_attributed'), whole, since='event_at') }}) as attributed
    where contact_id is not null
),

sessions as (
    select * from ({{ changed_visitor_rows(ref('int_sessions_sessionized'), whole, since='started_at') }}) as held
    where contact_id is not null
),

activities as (
    select * from {{ ref('int_contact_crm_activities') }}
),

pageviews as (
    select contact_id, event_id as source_id, event_at as occurred_at, event_date, known_date,
        'pageviews' as feature
    from events
    where event_type = 'page'
),

page_features as (
    select contact_id, event_id as source_id, event_at as occurred_at, event_date, known_date,
        page_feature as feature
    from events
    where page_feature is not null
),

track_features as (
    select contact_id, event_id as source_id, event_at as occurred_at, event_date, known_date,
        track_feature as feature
    from events
    where track_feature is not null
),

session_facts as (
    select contact_id, session_id as source_id, started_at as occurred_at, session_date as event_date,
        known_date, 'sessions' as feature
    from sessions
),

repeat_visit_days as (
    select contact_id, session_id as source_id, started_at as occurred_at, session_date as event_date,
        known_date, 'repeat_visit_days' as feature
    from sessions
    where is_repeat_visit and is_first_session_of_day
),

meetings as (
    select contact_id, activity_key as source_id, activity_at as occurred_at, activity_date as event_date,
        known_date, 'meetings' as feature
    from activities
    where activity_type = 'meeting' and is_held_or_scheduled
),

all_facts as (
    select * from pageviews
    union all
    select * from page_features
    union all
    select * from track_features
    union all
    select * from session_facts
    union all
    select * from repeat_visit_days
    union all
    select * from meetings
)

select *, transaction_timestamp() as _written_at from all_facts
