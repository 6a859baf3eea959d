{{ config(pre_hook=["{{ changes_read(attribution_log()) }}", "{{ changes_from_day_start() }}",
                    "{{ visitor_rows_retract('visitor_key', since_day='event_date') }}"],
          post_hook="{{ changes_applied(attribution_log()) }}",
          **appended_table_config([{'columns': ['visitor_key', 'event_date']}, {'columns': ['_written_at']}])) }}
{%- set whole = rebuilds_whole(attribution_log()) %}
-- Per contact, catalog title and UTC day: the views and downloads of that title, and the last of them. Web
-- touchpoints rank a contact's top content from these rows rather than from every event it ever had.
-- Incremental by visitor (macros/visitor_changes.sql): a daily run rewrites a changed contact's days from the day
-- of its earliest changed event on.
with

events as (
    select * from ({{ changed_visitor_rows(ref('int_events_attributed'), whole, since='event_at') }}) as attributed
    where contact_id is not null and content_title is not null
),

final as (
    select
        visitor_key,
        contact_id,
        content_title,
        event_date,
        count(*) as times,
        max(event_at) as last_at
    from events
    group by visitor_key, contact_id, content_title, event_date
)

select *, transaction_timestamp() as _written_at from final
