{#- One notion of "has this period ended?" for every mart that reports by period (conversion.cohort_grain).
    A period [start, end) is complete once its end (UTC midnight) is at or before the run's data interval end
    (int_run_interval.interval_end_at); until then its figures are partial and no verdict is given on it. -#}

{% macro period_end_at(period_start, periods=1) -%}
    {#- the UTC midnight that ends `periods` periods after `period_start` (a date); needs `settings` in scope -#}
    {{ utc_midnight('(' ~ period_start ~ ') + (' ~ periods ~ ') * settings.period_interval') }}
{%- endmacro %}

{% macro period_is_complete(end_at) -%}
    {#- `end_at`: the period's end (period_end_at); needs `run_interval` (int_run_interval) in scope -#}
    ({{ end_at }} <= run_interval.interval_end_at)
{%- endmacro %}
