-- The run's data interval (macro data_interval: the environment the DAG sets, or vars), or (when unset)
-- everything the warehouse holds, ending at the midnight after the latest event or CRM change. `interval_end_date` is the last day a run reports on.
with

events as (
    select * from {{ ref('int_events_attributed') }}
),

contacts as (
    select * from {{ ref('stg_crm__contacts') }}
),

data_end as (
    {% if data_interval('data_interval_end') %}
    -- not needed: no pass over every event
    select cast(null as timestamp) as data_end_utc
    {% else %}
    select
        date_trunc('day', greatest(
            (select max(received_at) from events),
            (select max(updated_at) from contacts)
        ) at time zone 'UTC') + interval '1 day' as data_end_utc
    {% endif %}
),

final as (
    select
        {% if data_interval('data_interval_start') %}
            cast('{{ data_interval("data_interval_start") }}' as timestamptz)
        {% else %}
            cast(null as timestamptz)
        {% endif %} as interval_start_at,
        {% if data_interval('data_interval_end') %}
            cast('{{ data_interval("data_interval_end") }}' as timestamptz)
        {% else %}
            coalesce(data_end_utc at time zone 'UTC', '1970-01-02'::timestamptz)
        {% endif %} as interval_end_at
    from data_end
)

select
    interval_start_at,
    interval_end_at,
    {{ utc_date("interval_end_at - interval '1 microsecond'") }} as interval_end_date
from final
