{#- Rows of `model` whose combination of `combination_of_columns` is not unique (the grain test).
    Written here because dbt packages (dbt_utils) cannot be installed offline. -#}
{% test unique_combination_of_columns(model, combination_of_columns) %}
{%- set cols = combination_of_columns | join(', ') %}
select {{ cols }}, count(*) as n_rows
from {{ model }}
group by {{ cols }}
having count(*) > 1
{% endtest %}
