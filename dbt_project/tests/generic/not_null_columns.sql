{#- Rows of `model` with a null in any of `columns`: the not_null test of several columns in one pass over the
    model. On the dense daily tables a daily run checks a few days of ~400,000 rows a day; one scan per column took
    2-4 s each there, on the path every later model waits on. The failing rows show which column is null. -#}
{% test not_null_columns(model, columns) %}
select {{ columns | join(', ') }}
from {{ model }}
where {{ columns | join(' is null or ') }} is null
{% endtest %}
