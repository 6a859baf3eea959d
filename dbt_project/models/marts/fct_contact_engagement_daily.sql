{{ config(
    materialized='incremental',
    incremental_strategy='delete+insert',
    unique_key=['contact_id', 'activity_date'],
    on_schema_change='fail',
    indexes=[{'columns': ['activity_date', 'contact_id'], 'unique': true}],
    pre_hook=["{{ jit_off_for_daily_runs() }}", "{{ fix_recompute_start('activity_date') }}",
              "{{ delete_recomputed_window('activity_date') }}"],
) }}
-- The unique index leads with the day (as the dense daily tables' do, macros/incremental.sql): a daily run's rows
-- go to the right edge of the btree, not into every active contact's leaf pages. Led by contact_id, inserting one
-- day's 51,288 rows at 100,000 contacts took 48.7 s, cold, right after a full build (bench/results, tier M).

with

facts as not materialized (
    -- read twice on a daily run: inlined, so each read is its index range
    select * from {{ ref('int_contact_engagement_facts') }}
),

contacts as (
    select * from {{ ref('int_contacts_enriched') }}
),

run_interval as (
    select * from {{ ref('int_run_interval') }}
),
{% if recomputes_range() %}

facts_in_scope as (
    -- the facts of the (contact, day) rows this run rebuilds: every day in the lookback (or since the last day
    -- held, after skipped runs), whole, since a fact is known on or after the day it happened (known_date >=
    -- event_date) ...
    select * from facts
    where facts.known_date >= {{ recompute_start_date() }}  -- the index range, implied by the next line
        and facts.event_date >= {{ recompute_start_date() }}
    union all
    -- ... and older days that gained facts known since then (identifying a visitor today brings its anonymous
    -- history with it), read day by day through the (contact_id, event_date) index
    select older.*
    from (
        select distinct contact_id, event_date
        from facts
        where known_date >= {{ recompute_start_date() }}
            and event_date < {{ recompute_start_date() }}
    ) as older_days
    cross join lateral (
        select * from facts
        where facts.contact_id = older_days.contact_id
            and facts.event_date = older_days.event_date
        -- offset 0 keeps it a per-day index probe (not pulled up into a join over every fact); no order needed
        offset 0  -- noqa: AM09
    ) as older
),
{% endif %}

daily as (
    select
        facts.contact_id,
        facts.event_date as activity_date,
        {% for feature in behaviour_features() %}
        count(*) filter (where facts.feature = '{{ feature }}')::integer as {{ feature }},
        {% endfor %}
        min(facts.occurred_at) as first_activity_at,
        max(facts.occurred_at) as last_activity_at
    from {% if recomputes_range() %}facts_in_scope as facts{% else %}facts{% endif %}
    cross join run_interval
    where facts.event_date <= run_interval.interval_end_date
    group by facts.contact_id, facts.event_date
),

final as (
    select
        daily.*,
        (daily.downloads_awareness + daily.downloads_consideration + daily.downloads_decision)::integer
            as downloads
    from daily
    inner join contacts
        on daily.contact_id = contacts.contact_id
)

select * from final
