{{ config(pre_hook=["{{ changes_read(attribution_log()) }}", "{{ changes_from_day_start() }}",
                    "{{ visitor_rows_retract('visitor_key', since_day='event_date') }}"],
          post_hook="{{ changes_applied(attribution_log()) }}",
          **appended_table_config([{'columns': ['visitor_key', 'event_date']},
                                   {'columns': ['visitor_key', 'content_title', 'event_date'], 'unique': true},
                                   {'columns': ['_written_at']}])) }}
{%- set whole = rebuilds_whole(attribution_log()) %}
-- Per contact, catalog title and UTC day: the views and downloads of that title, the last of them, and the
-- contact's running total of that title. Web touchpoints rank a contact's top content from its latest row of each
-- title rather than from every day it ever had, so a daily run's cost does not grow with the contact's history.
-- Incremental by visitor (macros/visitor_changes.sql): a daily run rewrites a changed contact's days from the day
-- of its earliest changed event on; each title's running total continues from its last day kept before them.
with

events as (
    select * from ({{ changed_visitor_rows(ref('int_events_attributed'), whole, since='event_at') }}) as attributed
    where contact_id is not null and content_title is not null
),

days as (
    select
        visitor_key,
        contact_id,
        content_title,
        event_date,
        count(*) as times,
        max(event_at) as last_at
    from events
    group by visitor_key, contact_id, content_title, event_date
),

kept_totals as (
    {%- if whole %}
    -- a whole build keeps nothing: every total starts at 0
    select null::text as visitor_key, null::text as content_title, null::bigint as times_to_date
    where false
    {%- else %}
    -- each rewritten title's total on the last day kept before the rewritten ones: one index probe
    select titles.visitor_key, titles.content_title, kept.times_to_date
    from (
        select visitor_key, content_title, min(event_date) as first_date
        from days
        group by visitor_key, content_title
    ) as titles
    cross join lateral (
        select held.times_to_date from {{ this }} as held
        where held.visitor_key = titles.visitor_key and held.content_title = titles.content_title
            and held.event_date < titles.first_date
        order by held.event_date desc
        limit 1
    ) as kept
    {%- endif %}
),

final as (
    select
        days.*,
        (coalesce(kept_totals.times_to_date, 0) + sum(days.times) over (
            partition by days.visitor_key, days.content_title order by days.event_date
        ))::bigint as times_to_date
    from days
    left join kept_totals
        on days.visitor_key = kept_totals.visitor_key and days.content_title = kept_totals.content_title
)

select *, transaction_timestamp() as _written_at from final
