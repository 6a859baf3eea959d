{{ config(
    materialized='incremental',
    incremental_strategy='delete+insert',
    unique_key=['contact_id', 'activity_date'],
    on_schema_change='fail',
    indexes=[{'columns': ['contact_id', 'activity_date'], 'unique': true}, {'columns': ['activity_date']}],
) }}

with

facts as (
    select * from {{ ref('int_contact_engagement_facts') }}
),

contacts as (
    select * from {{ ref('int_contacts_enriched') }}
),

run_interval as (
    select * from {{ ref('int_run_interval') }}
),
{% if is_incremental() and data_interval('data_interval_start') %}

touched as (
    -- the (contact, day) rows this run rebuilds: every day in the lookback (or since the last day held, after
    -- skipped runs), and older days that gained facts known since then (identifying a visitor today brings its
    -- anonymous history with it)
    select distinct contact_id, event_date
    from facts
    where event_date >= {{ recompute_start_expr('activity_date') }}
        or known_date >= {{ recompute_start_expr('activity_date') }}
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
    from facts
    {% if is_incremental() and data_interval('data_interval_start') %}
    inner join touched
        on facts.contact_id = touched.contact_id
        and facts.event_date = touched.event_date
    {% endif %}
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
