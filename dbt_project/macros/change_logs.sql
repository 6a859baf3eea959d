{#- Change logs, watermarks and applied inputs: the state a daily run keeps between runs (docs/incremental.md,
    "Change logs"). A model that others follow appends the keys it rewrote to `<model>__changes` in the
    transaction of its rows ('*': all of them); each follower reads the log past its watermark in
    handoff_watermarks and moves the watermark in the transaction of its own rows. -#}

{% macro _suffixed(relation, suffix) -%}
    {{ return(relation.incorporate(path={'identifier': relation.identifier ~ suffix})) }}
{%- endmacro %}

{% macro changes_log(model) -%}{{ return(_suffixed(model, '__changes')) }}{%- endmacro %}

{% macro watermarks(log) -%}
    {{ return(log.incorporate(path={'identifier': 'handoff_watermarks'})) }}
{%- endmacro %}

{% macro watermark_of(log, model) -%}
    (select changes_to from {{ watermarks(log) }} where log = '{{ log.identifier }}' and model = '{{ model }}')
{%- endmacro %}

{#- Missing tables are made on the fly: a new warehouse, or the first run after an upgrade. -#}
{% macro changes_tables(log) -%}
    create table if not exists {{ log }} (changed_at timestamptz not null, key text not null, changed_from timestamptz);
    create table if not exists {{ watermarks(log) }} (
        log text not null, model text not null, changes_to timestamptz not null, primary key (log, model))
{%- endmacro %}

{#- Append `rows` (key, changed_from) to the log, stamped with this transaction's time. -#}
{% macro changes_write(log, rows) -%}
    insert into {{ log }} (changed_at, key, changed_from) select now(), key, changed_from from ({{ rows }}) as changed
{%- endmacro %}

{#- A follower's pre-hook: handoff.changes_to = the log's newest entry, but no later than the watermarks of the
    followers in `after`; pg_temp.handoff_changes = the keys logged past this model's watermark, each from its
    earliest changed_from ('-infinity': all its history). No watermark yet reads as '*'. -#}
{% macro changes_read(log, after=[]) -%}
    {{ changes_tables(log) }};
    select set_config('handoff.changes_to', least(
        coalesce((select max(changed_at) from {{ log }}), '-infinity'::timestamptz)
        {%- for model in after %}, coalesce({{ watermark_of(log, model) }}, '-infinity'::timestamptz){% endfor %}
    )::text, true);
    create temp table handoff_changes on commit drop as
        select key, min(coalesce(changed_from, '-infinity'::timestamptz)) as changed_from from {{ log }}
        where changed_at > coalesce({{ watermark_of(log, this.identifier) }}, '-infinity'::timestamptz)
            and changed_at <= current_setting('handoff.changes_to')::timestamptz
        group by key
        union
        select '*', '-infinity'::timestamptz where {{ watermark_of(log, this.identifier) }} is null;
    alter table handoff_changes add primary key (key);
    analyze handoff_changes
{%- endmacro %}

{#- A follower's post-hook: its watermark moves to what it read; the log keeps what a follower has yet to read.
    A backtest's copy of a model (its own schema) reads production's logs but never moves their watermarks. -#}
{% macro changes_applied(log) -%}
    {%- if var('backtest', none) and log.schema != var('backtest')['schema'] -%}
    select 1
    {%- else -%}
    insert into {{ watermarks(log) }} (log, model, changes_to)
    values ('{{ log.identifier }}', '{{ this.identifier }}', current_setting('handoff.changes_to')::timestamptz)
    on conflict (log, model) do update set changes_to = excluded.changes_to;
    delete from {{ log }}
    where changed_at <= (select min(changes_to) from {{ watermarks(log) }} where log = '{{ log.identifier }}')
    {%- endif -%}
{%- endmacro %}

{#- True when a follower rebuilds whole: a full build, or, asked when the model compiles, no watermark yet or a
    '*' logged past it. The model body and its hooks ask the same. -#}
{% macro rebuilds_whole(log) -%}
    {%- if not is_incremental() -%}{{ return(true) }}{%- endif -%}
    {%- if not execute -%}{{ return(false) }}{%- endif -%}
    {%- set tables = "select to_regclass('%s') is null or to_regclass('%s') is null"
                     % (log.include(database=false), watermarks(log).include(database=false)) -%}
    {%- if run_query(tables).columns[0].values()[0] -%}{{ return(true) }}{%- endif -%}
    {%- set query -%}
        select {{ watermark_of(log, this.identifier) }} is null or exists (
            select 1 from {{ log }} where key = '*' and changed_at > {{ watermark_of(log, this.identifier) }})
    {%- endset -%}
    {{ return(run_query(query).columns[0].values()[0]) }}
{%- endmacro %}

{#- A model's applied inputs, (kind, key, value) rows kept in `<model>__applied` in the transaction of its rows. The
    pre-hook half: on an incremental run pg_temp.<prefix>_inputs = the inputs now, pg_temp.<prefix>_changed = the
    rows that differ either way (new, gone or changed keys), is_now telling which side each row is from. -#}
{% macro applied_inputs_diff(prefix, inputs_sql) -%}
    {%- set applied = _suffixed(this, '__applied') -%}
    create table if not exists {{ applied }} (kind text not null, key text not null, value text);
    {%- if is_incremental() %}
    create temp table {{ prefix }}_inputs on commit drop as {{ inputs_sql }};
    create temp table {{ prefix }}_changed on commit drop as
        (select *, true as is_now from {{ prefix }}_inputs except select *, true from {{ applied }})
        union all
        (select *, false as is_now from {{ applied }} except select *, false from {{ prefix }}_inputs);
    analyze {{ prefix }}_changed;
    {%- endif %}
{%- endmacro %}

{#- The post-hook half: the applied inputs become the inputs now. On an incremental run only the rows that differ
    are written (the rows gone leave, the rows new arrive); after a full build every row. -#}
{% macro applied_inputs_record(prefix, inputs_sql) -%}
    {%- set applied = _suffixed(this, '__applied') -%}
    {%- if is_incremental() %}
    delete from {{ applied }} as held using {{ prefix }}_changed as changed
    where not changed.is_now and held.kind = changed.kind and held.key = changed.key
        and held.value is not distinct from changed.value;
    insert into {{ applied }} select kind, key, value from {{ prefix }}_changed where is_now
    {%- else %}
    delete from {{ applied }};
    insert into {{ applied }} {{ inputs_sql }}
    {%- endif %}
{%- endmacro %}
