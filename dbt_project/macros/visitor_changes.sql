{#- Incremental event-level models: a daily run re-derives only the visitors whose events changed.

    int_events_attributed (the producer) keeps a copy of the inputs it last applied (`<model>__applied`: the stitched
    identities, the CRM contact ids, the staged load batches, a fingerprint of the content catalog and event map). A
    run compares them with the current inputs and recomputes only the events they touch: those of new batches, of a
    device whose identity changed, of a userId whose contact appeared or went. Every visitor key those events had
    before and have after goes into an append-only change log (`<model>__visitor_changes`: changed_at = the run's
    transaction time; '*' = rebuilt whole), in the same transaction as the rows and the copy: either all of a run's
    change lands or none.

    The consumers (sessions, facts, web touchpoints) each keep a watermark (`handoff_visitor_watermarks`: the last
    change they applied), written in the transaction that applies it, and delete then recompute the visitors logged
    after it. A consumer reads no further than the watermarks of the consumers it reads (facts waits for sessions),
    so a failed or skipped run is caught up by the next one. The log is pruned up to the oldest consumer watermark.
    Exactly what a full refresh computes, for the visitors it recomputes: sessions, first touches and facts are
    derived from the visitor's whole history. -#}

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

{#- int_events_attributed's pre-hook: the change tables exist; on an incremental run, the events to recompute
    (pg_temp.handoff_attribution_dirty, which the model reads) and the visitor keys they had before. -#}
{% macro attribution_changes_prepare() -%}
    {%- set events = ref('stg_analytics__events') -%}
    {%- set log = visitor_changes_log(this) -%}
    {%- set applied = _suffixed(this, '__applied') -%}
    create table if not exists {{ log }} (changed_at timestamptz not null, visitor_key text not null);
    create table if not exists {{ applied }} (kind text not null, key text not null, value text);
    create table if not exists {{ visitor_watermarks(this) }} (model text primary key, changes_to timestamptz not null);
    {%- if is_incremental() %}
    create temp table handoff_attribution_inputs on commit drop as
        {{ attribution_inputs() }};
    create temp table handoff_attribution_changed on commit drop as
        (select * from handoff_attribution_inputs except select * from {{ applied }})
        union
        (select * from {{ applied }} except select * from handoff_attribution_inputs);
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
    insert into {{ log }} (changed_at, visitor_key)
        select distinct now(), visitor_key from {{ this }}
        where event_id in (select event_id from handoff_attribution_dirty) and visitor_key is not null;
    {%- endif %}
{%- endmacro %}

{#- int_events_attributed's post-hook, in the same transaction: the visitor keys the recomputed events have now
    ('*' after a full build), the inputs applied, and the log pruned to what some consumer has yet to read. -#}
{% macro attribution_changes_record() -%}
    {%- set log = visitor_changes_log(this) -%}
    {%- set applied = _suffixed(this, '__applied') -%}
    {%- set watermarks = visitor_watermarks(this) -%}
    delete from {{ applied }};
    {%- if is_incremental() %}
    insert into {{ log }} (changed_at, visitor_key)
        select distinct now(), visitor_key from {{ this }}
        where event_id in (select event_id from handoff_attribution_dirty) and visitor_key is not null;
    insert into {{ applied }} select * from handoff_attribution_inputs;
    {%- else %}
    insert into {{ log }} (changed_at, visitor_key) values (now(), '*');
    insert into {{ applied }} {{ attribution_inputs() }};
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

{#- A consumer's pre-hook: fix how far it reads the log (no further than the consumers in `after`), then on an
    incremental run the changed visitor keys (pg_temp.handoff_changed_visitors, which the model reads) and delete
    its rows of them: `delete_where` is the condition on its rows, given the changed keys as the relation
    `changed`. A whole rebuild of an existing table deletes everything. -#}
{% macro visitor_changes_consume(attributed, delete_where, after=[]) -%}
    {%- set log = visitor_changes_log(attributed) -%}
    {%- set watermarks = visitor_watermarks(attributed) -%}
    select set_config('handoff.changes_to', least(
        coalesce((select max(changed_at) from {{ log }}), '-infinity'::timestamptz)
        {%- for upstream in after %},
        coalesce({{ _watermark_of(attributed, upstream) }}, '-infinity'::timestamptz)
        {%- endfor %}
    )::text, true);
    {%- if visitor_changes_rebuild_whole(attributed) %}
    {%- if is_incremental() %}
    delete from {{ this }};
    {%- endif %}
    {%- else %}
    create temp table handoff_changed_visitors on commit drop as
        select distinct visitor_key from {{ log }}
        where changed_at > {{ _watermark_of(attributed, this.identifier) }}
            and changed_at <= current_setting('handoff.changes_to')::timestamptz;
    analyze handoff_changed_visitors;
    delete from {{ this }} where {{ delete_where }};
    {%- endif %}
{%- endmacro %}

{#- A consumer's post-hook: the changes it applied, in the same transaction as its rows. -#}
{% macro visitor_changes_consumed(attributed) -%}
    insert into {{ visitor_watermarks(attributed) }} (model, changes_to)
    values ('{{ this.identifier }}', current_setting('handoff.changes_to')::timestamptz)
    on conflict (model) do update set changes_to = excluded.changes_to
{%- endmacro %}

{#- The changed visitors a consumer's model reads on an incremental run: `visitor_key in (...)`. -#}
{% macro changed_visitor_keys() -%}
    (select visitor_key from pg_temp.handoff_changed_visitors)
{%- endmacro %}

{#- The contacts among them. -#}
{% macro changed_contact_ids() -%}
    (select substr(visitor_key, 3) from pg_temp.handoff_changed_visitors where visitor_key like 'c:%')
{%- endmacro %}
