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
    cross join run_interval
    where facts.event_date <= run_interval.interval_end_date
        {{ incremental_lookback_filter('facts.event_date') }}
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
