{#- One row when `model` and `compare_model` hold different numbers of rows (dbt_utils's equal_rowcount, written here
    for the same reason as unique_combination_of_columns). A model that left-joins lookups onto a parent with a
    unique key keeps that key unique exactly when it has the parent's row count: two counts instead of grouping
    10 million keys. -#}
{% test equal_rowcount(model, compare_model) %}
select model_rows.n as model_rows, compare_rows.n as compare_model_rows
from (select count(*) as n from {{ model }}) as model_rows
cross join (select count(*) as n from {{ compare_model }}) as compare_rows
where model_rows.n <> compare_rows.n
{% endtest %}
