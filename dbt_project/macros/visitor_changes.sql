{#- The event-level models on a daily run: stitching and attribution recompute what their changed inputs touch;
    attribution logs the visitors it rewrote; sessions, facts and web touchpoints follow that log
    (docs/incremental.md, "Event-level models"). -#}

{% macro attribution_log() -%}{{ return(changes_log(ref('int_events_attributed'))) }}{%- endmacro %}

{#- The distinct load batches of a table indexed on _batch_id: one index probe per batch (a loose index scan). -#}
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

{#- What stitching reads: each contact's email, archived flag and creation time; the staged batches. -#}
{% macro identity_inputs() -%}
    select 'contact'::text as kind, contact_id::text as key,
        json_build_array(email, is_archived, created_at)::text as value
    from {{ ref('stg_crm__contacts') }}
    union all
    select 'batch', _batch_id::text, null from ({{ distinct_batches(ref('stg_analytics__events')) }}) as batches
{%- endmacro %}

{#- Stitching's pre-hook: the devices to stitch again (pg_temp.handoff_identity_devices) leave the table: new
    evidence that sorts before a device's identity (the first evidence wins), evidence naming a changed contact
    (userId, or an email it had or has), devices stitched to a changed contact. -#}
{% macro identity_changes_prepare() -%}
    {%- set events = ref('stg_analytics__events') -%}
    {{ applied_inputs_diff('handoff_identity', identity_inputs()) }}
    {%- if is_incremental() %}
    create temp table handoff_identity_devices on commit drop as
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
        where user_id in (select key from handoff_identity_changed where kind = 'contact') and anonymous_id is not null
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

{#- What attribution reads: each device's identity, each contact id, the staged batches, the catalog and event map. -#}
{% macro attribution_inputs() -%}
    select 'identity'::text as kind, anonymous_id::text as key,
        contact_id || '|' || extract(epoch from identified_at)::text as value
    from {{ ref('int_identities_stitched') }}
    union all
    select 'contact', contact_id, null from {{ ref('stg_crm__contacts') }}
    union all
    select 'batch', _batch_id::text, null from ({{ distinct_batches(ref('stg_analytics__events')) }}) as batches
    union all
    select 'definition', 'content_catalog, funnel_event_map', md5(
        coalesce((select string_agg(c::text, ',' order by c::text) from {{ ref('content_catalog') }} as c), '') || '/'
        || coalesce((select string_agg(m::text, ',' order by m::text) from {{ ref('funnel_event_map') }} as m), ''))
{%- endmacro %}

{#- Attribution's pre-hook: the dirty events (pg_temp.handoff_attribution_dirty, which the model reads) leave the
    table, and the visitors they had go to the log, each from its earliest such event. -#}
{% macro attribution_changes_prepare() -%}
    {%- set events = ref('stg_analytics__events') -%}
    {{ changes_tables(changes_log(this)) }};
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
        select event_id from {{ events }}  -- a changed catalog or event map: every event (a one-time filter)
        where exists (select 1 from handoff_attribution_changed where kind = 'definition');
    analyze handoff_attribution_dirty;
    -- probe the key's index, not a scan of every event (docs/incremental.md), here and in the model's read of the
    -- dirty events from the staged ones
    set local random_page_cost = 1.1;
    with gone as (
        delete from {{ this }} where event_id in (select event_id from handoff_attribution_dirty)
        returning visitor_key, event_at
    )
    {{ changes_write(changes_log(this), 'select visitor_key as key, min(event_at) as changed_from from gone'
                                        ~ ' where visitor_key is not null group by visitor_key') }};
    {%- endif %}
{%- endmacro %}

{#- Attribution's post-hook: the visitors the rewritten events have now ('*' after a full build). -#}
{% macro attribution_changes_record() -%}
    {{ applied_inputs_record('handoff_attribution', attribution_inputs()) }};
    {{ changes_write(changes_log(this),
                     'select visitor_key as key, min(event_at) as changed_from from ' ~ this
                     ~ ' where _written_at = transaction_timestamp() and visitor_key is not null group by visitor_key'
                     if is_incremental() else "select '*' as key, null::timestamptz as changed_from") }}
{%- endmacro %}

{#- A follower's last pre-hook: its rows of the changed visitors leave (by `key`, 'visitor_key' or 'contact_id';
    from their changed_from on when `since` names the time column, and `since_day` its UTC day, which the key's
    index holds); a whole rebuild deletes everything. Index probes per visitor, as in changed_visitor_rows: the
    planner, which cannot see how recent changed_from is, would scan the whole table. -#}
{% macro visitor_rows_retract(key, since=none, since_day=none) -%}
    {%- if not rebuilds_whole(attribution_log()) %}
    set local jit = off;  -- a few rows per visitor: compiling the query costs more than it saves
    set local enable_hashjoin = off;
    set local enable_mergejoin = off;
    delete from {{ this }} as held
    using pg_temp.handoff_changes as changed
    where {{ 'held.visitor_key = changed.key' if key == 'visitor_key'
             else "changed.key like 'c:%' and held.contact_id = substr(changed.key, 3)" }}
        {%- if since %} and held.{{ since }} >= changed.changed_from{% endif %}
        {%- if since_day %} and held.{{ since_day }} >= (changed.changed_from at time zone 'UTC')::date{% endif %};
    set local enable_hashjoin to default;
    set local enable_mergejoin to default
    {%- elif is_incremental() %}
    delete from {{ this }}
    {%- endif %}
{%- endmacro %}

{#- What a follower reads of `relation` (with visitor_key): every row on a whole rebuild, else the changed visitors'
    rows, from their changed_from on when `since` names the time column: one range read each on the
    (visitor_key[, since]) index (a lateral join; a plain join let the planner, which cannot see how few rows a
    visitor has or how recent changed_from is, scan all 10 million events at tier M for the 130,000 it needed).
    `where` filters the rows; `first_by` (an order on the index's time column) keeps each changed visitor's first
    row only, one index probe (a whole rebuild reads every row: the model picks the first itself). -#}
{% macro changed_visitor_rows(relation, whole, since=none, where=none, first_by=none) -%}
    {%- if whole %}
    select source_rows.* from {{ relation }} as source_rows{% if where %} where {{ where }}{% endif %}
    {%- else %}
    select source_rows.* from pg_temp.handoff_changes as changed
    cross join lateral (
        select * from {{ relation }} as held
        where held.visitor_key = changed.key{% if since %} and held.{{ since }} >= changed.changed_from{% endif %}
            {%- if where %} and {{ where }}{% endif %}
        {%- if first_by %}
        order by {{ first_by }} limit 1
        {%- else %}
        offset 0  -- keeps the planner from flattening the lateral read into a join
        {%- endif %}
    ) as source_rows
    {%- endif %}
{%- endmacro %}

{#- A pre-hook for a follower kept by UTC day: each changed visitor's changed_from moves back to the start of its day,
    so the day it rewrites is read whole (analyzed again: without it the delete scanned the whole table). -#}
{% macro changes_from_day_start() -%}
    {%- if not rebuilds_whole(attribution_log()) %}
    update pg_temp.handoff_changes
    set changed_from = date_trunc('day', changed_from at time zone 'UTC') at time zone 'UTC'
    where changed_from > '-infinity';
    analyze handoff_changes
    {%- endif %}
{%- endmacro %}

{#- Sessions' pre-hook: each changed visitor resumes at the last session that starts at or before its earliest
    changed event (changed_from moves back to its start); pg_temp.handoff_session_resume carries the number of the
    sessions kept before it and the days of the first and last of them, for the numbering and the flags. -#}
{% macro session_resume_points() -%}
    {%- if not rebuilds_whole(attribution_log()) %}
    create temp table handoff_session_resume on commit drop as
        select changed.key as visitor_key, resumed.started_at, coalesce(resumed.session_index - 1, 0) as sessions_before,
            first_kept.first_session_date, last_kept.last_session_date
        from pg_temp.handoff_changes as changed
        left join lateral (
            select held.started_at, held.session_index from {{ this }} as held
            where held.visitor_key = changed.key and held.started_at <= changed.changed_from
            order by held.started_at desc limit 1
        ) as resumed on true
        left join lateral (
            select held.session_date as first_session_date from {{ this }} as held
            where held.visitor_key = changed.key and held.started_at < resumed.started_at
            order by held.started_at limit 1
        ) as first_kept on true
        left join lateral (
            select held.session_date as last_session_date from {{ this }} as held
            where held.visitor_key = changed.key and held.started_at < resumed.started_at
            order by held.started_at desc limit 1
        ) as last_kept on true;
    alter table handoff_session_resume add primary key (visitor_key);
    analyze handoff_session_resume;
    update pg_temp.handoff_changes as changed
    set changed_from = coalesce(resumed.started_at, '-infinity'::timestamptz)
    from handoff_session_resume as resumed
    where resumed.visitor_key = changed.key;
    analyze handoff_changes;
    {%- endif %}
{%- endmacro %}
