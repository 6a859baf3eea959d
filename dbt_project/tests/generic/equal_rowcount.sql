{#- One row when `model` and `compare_model` hold different numbers of rows (dbt_utils's equal_rowcount, written here
    for the same reason as unique_combination_of_columns). A model that left-joins lookups onto a parent with a
    unique key keeps that key unique exactly when it has the parent's row count: two counts instead of grouping
    10 million keys. On a daily run, with `key` and a compare_model in var('tests_on_written_rows'), the counts are
    of the rows the run wrote to compare_model and of those keys in `model` (an index probe each): every row the
    run staged went through. Counting both tables whole read 20 million rows at tier M, and grew with history. -#}
{% test equal_rowcount(model, compare_model, key=none) %}
{%- if key and tests_scoped() and compare_model.identifier in var('tests_on_written_rows', []) %}
{%- set written %}select {{ key }} from {{ compare_model }} where {{ last_write_condition(compare_model) }}{% endset %}
select model_rows.n as model_rows, compare_rows.n as compare_model_rows
from (select count(*) as n from {{ model }} where {{ key }} in ({{ written }})) as model_rows
cross join (select count(*) as n from ({{ written }}) as written) as compare_rows
{%- else %}
select model_rows.n as model_rows, compare_rows.n as compare_model_rows
from (select count(*) as n from {{ model }}) as model_rows
cross join (select count(*) as n from {{ compare_model }}) as compare_rows
{%- endif %}
where model_rows.n <> compare_rows.n
{% endtest %}
