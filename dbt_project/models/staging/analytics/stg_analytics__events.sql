{{ config(
    materialized='incremental',
    unique_key='event_id',
    incremental_strategy='delete+insert',
    on_schema_change='fail',
    indexes=[{'columns': ['event_id'], 'unique': true}, {'columns': ['_batch_id']}, {'columns': ['anonymous_id']},
             {'columns': ['user_id']}, {'columns': ['traits_email']}, {'columns': ['_written_at']}],
) }}
-- The one staging model that is a table: every consumer (identity stitching, attribution, the tests) reads the
-- deduplicated events, and as a view each of them re-sorted the whole raw table by messageId. Incremental by load
-- batch: a run takes the rows of the batches it does not hold yet (whatever their load time or commit order), and
-- a message's copy replaces the one held only when it is the later copy (delete+insert on event_id), so the table
-- equals a full refresh. A batch whose every row a later copy replaced is read again each run, and changes nothing.
-- Indexes: event_id (the merge key), _batch_id (new batches), anonymous_id, user_id and traits_email (the events
-- of a device, userId or email whose stitching or attribution changed), _written_at (the tests' scope).
with

source as (
    select * from {{ source('analytics', 'analytics_events') }}
),

{% if is_incremental() %}
raw_batches as (
    select _batch_id from ({{ distinct_batches(source('analytics', 'analytics_events')) }}) as batches
),

new_batches as (
    select raw_batches._batch_id
    from raw_batches
    where not exists (select 1 from {{ this }} as held where held._batch_id = raw_batches._batch_id)
),
{% endif %}

latest as (
    -- a message is unique (Segment messageId); a re-delivered or re-loaded message keeps its latest copy
    select distinct on (message_id) *
    from source
    {% if is_incremental() %}
    where _batch_id in (select _batch_id from new_batches)
    {% endif %}
    order by message_id, _loaded_at desc, _line desc
),

final as (
    select
        message_id as event_id,
        lower(event_type) as event_type,
        event_name,
        nullif(anonymous_id, '') as anonymous_id,
        nullif(user_id, '') as user_id,
        event_at,
        received_at,
        {{ utc_date('event_at') }} as event_date,
        nullif(
            split_part(coalesce(
                nullif(record -> 'context' -> 'page' ->> 'path', ''),
                nullif(record -> 'properties' ->> 'path', '')
            ), '?', 1),
            ''
        ) as page_path,
        nullif(split_part(record -> 'properties' ->> 'asset_path', '?', 1), '') as asset_path,
        nullif(record -> 'properties' ->> 'form_id', '') as form_id,
        nullif(coalesce(record -> 'context' -> 'page' ->> 'referrer', record -> 'properties' ->> 'referrer'), '')
            as referrer,
        lower(nullif(record -> 'context' -> 'campaign' ->> 'source', '')) as utm_source,
        lower(nullif(record -> 'context' -> 'campaign' ->> 'medium', '')) as utm_medium,
        nullif(record -> 'context' -> 'campaign' ->> 'name', '') as utm_campaign,
        lower(btrim(nullif(coalesce(
            record -> 'traits' ->> 'email', record -> 'context' -> 'traits' ->> 'email'
        ), ''))) as traits_email,
        _loaded_at,
        _batch_id,
        _line,
        -- the run that wrote the row: a daily run's tests check the rows it wrote (macros/tests_scope.sql)
        transaction_timestamp() as _written_at
    from latest
)

select * from final
{% if is_incremental() %}
where not exists (
    select 1 from {{ this }} as held
    where held.event_id = final.event_id
        and (held._loaded_at, held._line) >= (final._loaded_at, final._line)
)
{% endif %}
