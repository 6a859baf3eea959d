{#- A daily run's days (docs/incremental.md, "The days"): L = recompute_start_date(), the first day recomputed;
    F = fresh_start_date(), the first day written for every contact; the interval end. The interval comes from
    HANDOFF_DATA_INTERVAL_START / _END (the DAG sets them; a changed env var re-parses less of the project than
    changed --vars) or from --vars data_interval_start / _end. -#}
{% macro data_interval(name) -%}
    {{ return(var(name) or env_var('HANDOFF_' ~ name | upper, '') or none) }}
{%- endmacro %}

{% macro has_interval() -%}
    {{ return(data_interval('data_interval_start') and data_interval('data_interval_end')) }}
{%- endmacro %}

{#- True on a daily run: an incremental model with an interval recomputes from L; otherwise everything. -#}
{% macro recomputes_range() -%}
    {{ return(is_incremental() and has_interval()) }}
{%- endmacro %}

{% macro lookback_start_date() -%}
    (cast('{{ data_interval("data_interval_start") }}' as timestamptz) at time zone 'UTC')::date - {{ var('lookback_days') | int }}
{%- endmacro %}

{% macro interval_end_date() -%}
    ((cast('{{ data_interval("data_interval_end") }}' as timestamptz) - interval '1 microsecond') at time zone 'UTC')::date
{%- endmacro %}

{% macro recompute_start_date() -%}
    current_setting('handoff.recompute_start')::date
{%- endmacro %}

{% macro fresh_start_date() -%}
    ({{ recompute_start_date() }} + {{ var('lookback_days') | int }})
{%- endmacro %}

{#- Pre-hook, before anything is deleted: L is the lookback start, or earlier after skipped runs (the last day the
    table holds + 1 − lookback days), kept in a setting so the planner reads it as a constant. -#}
{% macro fix_recompute_start(date_column) -%}
    {%- if recomputes_range() -%}
    select set_config('handoff.recompute_start', least({{ lookback_start_date() }}, coalesce(
        (select max({{ date_column }}) from {{ this }}), {{ lookback_start_date() }} - 1
    ) + 1 - {{ var('lookback_days') | int }})::text, true)
    {%- endif -%}
{%- endmacro %}

{#- A daily run's few days are planned with row estimates too high for JIT to pay (0.8 s of a 4 s query). -#}
{% macro jit_off_for_daily_runs() -%}
    {%- if recomputes_range() -%}set local jit = off{%- endif -%}
{%- endmacro %}

{#- The engagement mart's pre-hook: every row from L to the interval end leaves (the run recomputes those days
    for every contact); older days that gained facts are merged by key. -#}
{% macro delete_recomputed_window(date_column) -%}
    {%- if recomputes_range() -%}
        delete from {{ this }}
        where {{ date_column }} between {{ recompute_start_date() }} and {{ interval_end_date() }}
    {%- elif is_incremental() -%}
        delete from {{ this }}
    {%- endif -%}
{%- endmacro %}

{#- The tables a daily run appends to, keeping state from run to run (so logged): with their hooks,
    `{{ config(pre_hook=[...], post_hook=[...], **appended_table_config(indexes)) }}`. -#}
{% macro appended_table_config(indexes) -%}
    {{ return({'materialized': 'incremental', 'incremental_strategy': 'append', 'unlogged': false,
               'on_schema_change': 'fail', 'indexes': indexes}) }}
{%- endmacro %}

{#- The dense daily tables: the unique index leads with the day, so a run's rows go to the btree's right edge. -#}
{% macro daily_table_config(unique=true) -%}
    {{ return(appended_table_config([{'columns': ['score_date', 'contact_id'], 'unique': unique}])) }}
{%- endmacro %}

{#- The last line of a dense model: a whole build writes its rows in day order; a daily run's few days need no sort. -#}
{% macro daily_table_order(date_column='score_date') -%}
    {%- if not recomputes_range() -%}
    order by {{ date_column }}, contact_id
    {%- endif -%}
{%- endmacro %}

{#- Project-wide post-hook: an incremental model built whole gets its planner statistics at once, so the next daily
    run plans its index reads with them (autovacuum gets to a new table only later). -#}
{% macro analyze_if_rebuilt() -%}
    {%- if model.config.materialized == 'incremental' and not is_incremental() -%}
    analyze {{ this }}
    {%- endif -%}
{%- endmacro %}
