{#- Incremental models rebuild from var('data_interval_start') - var('lookback_days') (late events correct
    earlier days); with no interval start, or on a full refresh, they process everything. -#}
{% macro lookback_start_date() -%}
    (cast('{{ var("data_interval_start") }}' as timestamptz) at time zone 'UTC')::date - {{ var('lookback_days') | int }}
{%- endmacro %}

{% macro incremental_lookback_filter(date_column) -%}
    {%- if is_incremental() and var('data_interval_start') -%}
        and {{ date_column }} >= {{ lookback_start_date() }}
    {%- endif -%}
{%- endmacro %}
