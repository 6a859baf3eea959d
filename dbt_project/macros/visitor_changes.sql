{#- Incremental event-level models: a daily run re-derives only the visitors whose events changed.

    int_events_attributed (the producer) keeps a copy of the inputs it last applied (`<model>__applied`: the stitched
    identities, the CRM contact ids, the staged load batches, a fingerprint of the content catalog and event map). A
    run compares them with the current inputs and recomputes only the events they touch: those of new batches, of a
    device whose identity changed, of a userId whose contact appeared or went. Every visitor key those events had
    before and have after goes into an append-only change log (`<model>__visitor_changes`: changed_at = the run's
    transaction time; changed_from = the earliest event_at among that key's changed events; '*' = rebuilt whole), in
    the same transaction as the rows and the copy: either all of a run's change lands or none.

    The consumers (sessions, facts, web touchpoints) each keep a watermark (`handoff_visitor_watermarks`: the last
    change they applied), written in the transaction that applies it, and delete then recompute the visitors logged
    after it. A consumer reads no further than the watermarks of the consumers it reads (facts waits for sessions),
    so a failed or skipped run is caught up by the next one. The log is pruned up to the oldest consumer watermark.
    A consumer recomputes a changed visitor from the point its rows can differ (`since`): sessions from the last
    session that starts at or before the earliest changed event (session numbers and flags carry on from the ones
    kept), facts from that event; web touchpoints from the visitor's whole history. Exactly what a full refresh
    computes: a row before that point is derived only from events before it, which did not change. -#}

{% macro visitor_change_consumers() -%}
    {{ return(['int_sessions_sessionized', 'int_contact_engagement_facts', 'int_contact_web_touchpoints']) }}
{%- endmacro %}

{% macro _suffixed(relation, suffix) -%}
    {{ return(relation.incorporate(path={'identifier': relation.identifier ~ suffix})) }}
{%- endmacro %}

{% macro visitor_changes_log(attributed) -%}{{ return(_suffixed(attributed, '__visitor_changes')) }}{%- endmacro %}

{% macro visitor_watermarks(attributed) -%}
    {{ return(attributed.incorporate(path={'identifier': 'handoff_visitor_watermarks'})) }}
{%- endmacro %}

{#- The distinct load batches of a table with an index on _batch_id: one index probe per batch (a loose index scan),
    not a pass over every row. -#}
{% macro distinct_batches(relation) -%}
    with recursive batches (_batch_id) as (
        (select _batch_id from {{ relation }} order by _batch_id limit 1)
        union all
        select (select held._batch_id from {{ relation }} as held
                where held._batch_id > batches._batch_id order by held._batch_id limit 1)
        from batches
        where batches._batch_id is not null
    )
    select _batch_id from batches where _batch_id is not null
{%- endmacro %}

{#- What int_events_attributed's rows are derived from, as (kind, key, value) rows: comparing two such sets names
    the events to recompute. -#}
{% macro attribution_inputs() -%}
    {%- set events = ref('stg_analytics__events') -%}
    select 'identity'::text as kind, anonymous_id::text as key,
        contact_id || '|' || extract(epoch from identified_at)::text as value
    from {{ ref('int_identities_stitched') }}
    union all
    select 'contact', contact_id, null from {{ ref('stg_crm__contacts') }}
    union all
    select 'batch', _batch_id::text, null from ({{ distinct_batches(events) }}) as batches
    union all
    select 'definition', 'content_catalog, funnel_event_map', md5(
        coalesce((select string_agg(c::text, ',' order by c::text) from {{ ref('content_catalog') }} as c), '') || '/'
        || coalesce((select string_agg(m::text, ',' order by m::text) from {{ ref('funnel_event_map') }} as m), ''))
{%- endmacro %}

{#- A model that keeps a copy of the inputs it last applied (`<model>__applied`, (kind, key, value) rows written in
    the transaction of its rows): on an incremental run, pg_temp.<prefix>_inputs holds the inputs now and
    pg_temp.<prefix>_changed the rows that differ either way (new, gone or changed keys). -#}
{% macro applied_inputs_diff(prefix, inputs_sql) -%}
    {%- set applied = _suffixed(this, '__applied') -%}
    create table if not exists {{ applied }} (kind text not null, key text not null, value text);
    {%- if is_incremental() %}
    create temp table {{ prefix }}_inputs on commit drop as {{ inputs_sql }};
    create temp table {{ prefix }}_changed on commit drop as
        (select * from {{ prefix }}_inputs except select * from {{ applied }})
        union
        (select * from {{ applied }} except select * from {{ prefix }}_inputs);
    analyze {{ prefix }}_changed;
    {%- endif %}
{%- endmacro %}

{#- The post-hook half: the inputs applied (the ones diffed, or read now after a full build). -#}
{% macro applied_inputs_record(prefix, inputs_sql) -%}
    {%- set applied = _suffixed(this, '__applied') -%}
    delete from {{ applied }};
    {%- if is_incremental() %}
    insert into {{ applied }} select * from {{ prefix }}_inputs
    {%- else %}
    insert into {{ applied }} {{ inputs_sql }}
    {%- endif %}
{%- endmacro %}

{#- int_events_attributed's pre-hook: the change tables exist; on an incremental run, the events to recompute
    (pg_temp.handoff_attribution_dirty, which the model reads) leave the table, and the visitor keys they had go to
    the log (one pass: the model then appends their new rows). -#}
{% macro attribution_changes_prepare() -%}
    {%- set events = ref('stg_analytics__events') -%}
    {%- set log = visitor_changes_log(this) -%}
    create table if not exists {{ log }} (changed_at timestamptz not null, visitor_key text not null);
    -- (a log from before changed_from: its rows mean the visitor's whole history)
    alter table {{ log }} add column if not exists changed_from timestamptz;
    create table if not exists {{ visitor_watermarks(this) }} (model text primary key, changes_to timestamptz not null);
    {{ applied_inputs_diff('handoff_attribution', attribution_inputs()) }}
    {%- if is_incremental() %}
    create temp table handoff_attribution_dirty on commit drop as
        select event_id from {{ events }}
        where _batch_id in (select key::uuid from handoff_attribution_changed where kind = 'batch')
        union
        select event_id from {{ events }}
        where anonymous_id in (select key from handoff_attribution_changed where kind = 'identity')
        union
        select event_id from {{ events }}
        where user_id in (select key from handoff_attribution_changed where kind = 'contact')
        union
        -- a changed catalog or event map: every event (a one-time filter: no scan when unchanged)
        select event_id from {{ events }}
        where exists (select 1 from handoff_attribution_changed where kind = 'definition');
    analyze handoff_attribution_dirty;
    {#- The events to recompute leave by their unique key. At PostgreSQL's default random_page_cost (4) the planner
        scanned all 10.4 million rows for a day's 127,414 ids (tier M: 6.3 s, warm); priced as index probes cost on an
        SSD it probes the key's index (1.5 s). Only this statement: elsewhere in the build that price lost more. #}
    set local random_page_cost = 1.1;
    with gone as (
        delete from {{ this }} where event_id in (select event_id from handoff_attribution_dirty)
        returning visitor_key, event_at
    )
    {{ _log_visitors(log, 'gone') }};
    set local random_page_cost to default;
    {%- endif %}
{%- endmacro %}

{#- Log the visitor keys of `rows` (visitor_key, event_at), each with its earliest event_at. -#}
{% macro _log_visitors(log, rows) -%}
    insert into {{ log }} (changed_at, visitor_key, changed_from)
        select now(), visitor_key, min(event_at) from {{ rows }}
        where visitor_key is not null
        group by visitor_key
{%- endmacro %}

{#- int_events_attributed's post-hook, in the same transaction: the visitor keys the recomputed events have now
    ('*' after a full build), the inputs applied, and the log pruned to what some consumer has yet to read. -#}
{% macro attribution_changes_record() -%}
    {%- set log = visitor_changes_log(this) -%}
    {%- set watermarks = visitor_watermarks(this) -%}
    {{ applied_inputs_record('handoff_attribution', attribution_inputs()) }};
    {%- if is_incremental() %}
    -- the recomputed events' rows: the ones this transaction wrote (read through the _written_at index)
    {{ _log_visitors(log, '(select visitor_key, event_at from ' ~ this ~ ' where _written_at = transaction_timestamp())'
                           ~ ' as written') }};
    {%- else %}
    insert into {{ log }} (changed_at, visitor_key) values (now(), '*');
    {%- endif %}
    delete from {{ log }}
    where changed_at < (
        select case when count(*) = {{ visitor_change_consumers() | length }} then min(changes_to) end
        from {{ watermarks }}
        where model in ('{{ visitor_change_consumers() | join("', '") }}')
    )
{%- endmacro %}

{#- A consumer's watermark and the log as SQL expressions, for its hooks. -#}
{% macro _watermark_of(attributed, model_name) -%}
    (select changes_to from {{ visitor_watermarks(attributed) }} where model = '{{ model_name }}')
{%- endmacro %}

{#- True when a consumer rebuilds whole: a full refresh or a new table, no watermark yet, or a full rebuild of the
    attribution logged since its watermark. Asked at run time (the model body and its hooks agree). -#}
{% macro visitor_changes_rebuild_whole(attributed) -%}
    {%- if not is_incremental() -%}{{ return(true) }}{%- endif -%}
    {%- if not execute -%}{{ return(false) }}{%- endif -%}
    {%- set log = visitor_changes_log(attributed) -%}
    {%- set watermarks = visitor_watermarks(attributed) -%}
    {%- set tables = run_query("select to_regclass('" ~ log.include(database=false) ~ "') is not null and "
                               ~ "to_regclass('" ~ watermarks.include(database=false) ~ "') is not null"
                               ).columns[0].values()[0] -%}
    {%- if not tables -%}{{ return(true) }}{%- endif -%}
    {%- set query -%}
        select {{ _watermark_of(attributed, this.identifier) }} is null
            or exists (select 1 from {{ log }}
                       where visitor_key = '*' and changed_at > {{ _watermark_of(attributed, this.identifier) }})
    {%- endset -%}
    {{ return(run_query(query).columns[0].values()[0]) }}
{%- endmacro %}

{#- The config of a consumer: `{{ config(**visitor_consumer_config(key, indexes, since, after, pre_hooks)) }}`, with
    `key` its visitor column ('visitor_key', or 'contact_id' for a table of contacts) and `since` the time column
    from which a changed visitor's rows are recomputed (none: all of them). Appends, logged (it carries state);
    pre_hooks run once the changed visitors are known, before their rows leave. -#}
{% macro visitor_consumer_config(key, indexes, since=none, after=[], pre_hooks=[]) -%}
    {%- do return({
        'materialized': 'incremental',
        'incremental_strategy': 'append',
        'unlogged': false,
        'on_schema_change': 'fail',
        'indexes': indexes,
        'pre_hook': ["{{ visitor_changes_consume(ref('int_events_attributed'), after=" ~ (after | tojson) ~ ") }}"]
                    + pre_hooks
                    + ["{{ visitor_changes_retract(ref('int_events_attributed'), " ~ (key | tojson) ~ ", "
                       ~ (since | tojson) ~ ") }}"],
        'post_hook': ["{{ visitor_changes_consumed(ref('int_events_attributed')) }}"],
    }) -%}
{%- endmacro %}

{#- A consumer's first pre-hook: fix how far it reads the log (no further than the consumers in `after`), then on an
    incremental run the changed visitors (pg_temp.handoff_changed_visitors: visitor_key, its contact_id or null,
    changed_from = the earliest changed event_at, '-infinity' for the whole history). -#}
{% macro visitor_changes_consume(attributed, after=[]) -%}
    {%- set log = visitor_changes_log(attributed) -%}
    select set_config('handoff.changes_to', least(
        coalesce((select max(changed_at) from {{ log }}), '-infinity'::timestamptz)
        {%- for upstream in after %},
        coalesce({{ _watermark_of(attributed, upstream) }}, '-infinity'::timestamptz)
        {%- endfor %}
    )::text, true);
    {%- if not visitor_changes_rebuild_whole(attributed) %}
    create temp table handoff_changed_visitors on commit drop as
        select
            visitor_key,
            case when visitor_key like 'c:%' then substr(visitor_key, 3) end as contact_id,
            min(coalesce(changed_from, '-infinity'::timestamptz)) as changed_from
        from {{ log }}
        where changed_at > {{ _watermark_of(attributed, this.identifier) }}
            and changed_at <= current_setting('handoff.changes_to')::timestamptz
        group by visitor_key;
    create unique index on handoff_changed_visitors (visitor_key);
    analyze handoff_changed_visitors;
    {%- endif %}
{%- endmacro %}

{#- A consumer's last pre-hook: its rows of the changed visitors leave (by `key`; only those from their changed_from
    on when `since` names the time column). A whole rebuild of an existing table deletes everything. -#}
{% macro visitor_changes_retract(attributed, key, since=none) -%}
    {%- if visitor_changes_rebuild_whole(attributed) %}
    {%- if is_incremental() %}
    delete from {{ this }}
    {%- endif %}
    {%- else %}
    delete from {{ this }} as held
    using pg_temp.handoff_changed_visitors as changed
    where held.{{ key }} = changed.{{ key }}
        {%- if since %}
        and held.{{ since }} >= changed.changed_from
        {%- endif %}
    {%- endif %}
{%- endmacro %}

{#- A consumer's post-hook: the changes it applied, in the same transaction as its rows. -#}
{% macro visitor_changes_consumed(attributed) -%}
    insert into {{ visitor_watermarks(attributed) }} (model, changes_to)
    values ('{{ this.identifier }}', current_setting('handoff.changes_to')::timestamptz)
    on conflict (model) do update set changes_to = excluded.changes_to
{%- endmacro %}

{#- What a consumer's model reads of `relation` (a table with visitor_key): every row on a whole rebuild, else the
    rows of the changed visitors, from their changed_from on when `since` names the time column. -#}
{% macro changed_visitor_rows(relation, whole, since=none) -%}
    select source_rows.* from {{ relation }} as source_rows
    {%- if not whole %}
    inner join pg_temp.handoff_changed_visitors as changed
        on source_rows.visitor_key = changed.visitor_key
        {%- if since %}
        and source_rows.{{ since }} >= changed.changed_from
        {%- endif %}
    {%- endif %}
{%- endmacro %}

{#- int_sessions_sessionized's pre-hook, on an incremental run: where each changed visitor's sessions resume
    (pg_temp.handoff_session_resume, which the model reads): the last session that starts at or before its earliest
    changed event, recomputed with everything after it (changed_from moves back to its start); the sessions kept
    before it give the numbering and the flags their history decides (the first session's day, the day of the one
    before). A visitor with no session before its change is re-sessionized whole. -#}
{% macro session_resume_points() -%}
    {%- if not visitor_changes_rebuild_whole(ref('int_events_attributed')) %}
    create temp table handoff_session_resume on commit drop as
        select
            changed.visitor_key,
            resumed.started_at,
            coalesce(resumed.session_index - 1, 0) as sessions_before,
            first_kept.session_date as first_session_date,
            last_kept.session_date as last_session_date
        from pg_temp.handoff_changed_visitors as changed
        left join lateral (
            select held.started_at, held.session_index from {{ this }} as held
            where held.visitor_key = changed.visitor_key and held.started_at <= changed.changed_from
            order by held.started_at desc limit 1
        ) as resumed on true
        left join lateral (
            select held.session_date from {{ this }} as held
            where held.visitor_key = changed.visitor_key and held.started_at < resumed.started_at
            order by held.started_at limit 1
        ) as first_kept on true
        left join lateral (
            select held.session_date from {{ this }} as held
            where held.visitor_key = changed.visitor_key and held.started_at < resumed.started_at
            order by held.started_at desc limit 1
        ) as last_kept on true;
    create unique index on handoff_session_resume (visitor_key);
    analyze handoff_session_resume;
    update pg_temp.handoff_changed_visitors as changed
    set changed_from = coalesce(resumed.started_at, '-infinity'::timestamptz)
    from handoff_session_resume as resumed
    where resumed.visitor_key = changed.visitor_key;
    analyze handoff_changed_visitors;
    {%- endif %}
{%- endmacro %}

{#- int_identities_stitched: what a device's identity is derived from, as (kind, key, value) rows: every CRM contact
    with the fields stitching reads (email, archived, created), and the staged load batches. -#}
{% macro identity_inputs() -%}
    select 'contact'::text as kind, contact_id::text as key,
        json_build_array(email, is_archived, created_at)::text as value
    from {{ ref('stg_crm__contacts') }}
    union all
    select 'batch', _batch_id::text, null
    from ({{ distinct_batches(ref('stg_analytics__events')) }}) as batches
{%- endmacro %}

{#- int_identities_stitched's pre-hook: on an incremental run, the devices to stitch again
    (pg_temp.handoff_identity_devices, which the model reads), and their rows leave first: devices with evidence
    in new batches that sorts before their identity, with evidence naming a changed contact (as userId, or by an
    email it had or has), and devices stitched to a changed contact. -#}
{% macro identity_changes_prepare() -%}
    {%- set events = ref('stg_analytics__events') -%}
    {{ applied_inputs_diff('handoff_identity', identity_inputs()) }}
    {%- if is_incremental() %}
    create temp table handoff_identity_devices on commit drop as
        -- new evidence matters only before the device's identity (the first evidence wins), or with none yet
        select new.anonymous_id from {{ events }} as new
        where new._batch_id in (select key::uuid from handoff_identity_changed where kind = 'batch')
            and new.anonymous_id is not null
            and (new.user_id is not null or new.event_type = 'identify')
            and not exists (
                select 1 from {{ this }} as held
                where held.anonymous_id = new.anonymous_id
                    and (held.identified_at, held.identified_by_event_id) < (new.received_at, new.event_id)
            )
        union
        select anonymous_id from {{ events }}
        where user_id in (select key from handoff_identity_changed where kind = 'contact')
            and anonymous_id is not null
        union
        select anonymous_id from {{ events }}
        where traits_email in (select (value::jsonb) ->> 0 from handoff_identity_changed where kind = 'contact')
            and anonymous_id is not null
        union
        select anonymous_id from {{ this }}
        where contact_id in (select key from handoff_identity_changed where kind = 'contact');
    analyze handoff_identity_devices;
    delete from {{ this }} where anonymous_id in (select anonymous_id from handoff_identity_devices);
    {%- endif %}
{%- endmacro %}

{% macro identity_changes_record() -%}
    {{ applied_inputs_record('handoff_identity', identity_inputs()) }}
{%- endmacro %}
