{#- On a daily run the data tests of the big incremental tables check what the run wrote (docs/incremental.md,
    "Data tests"): the dense tables from L (var('tests_on_recomputed_days')), the event-level tables their last
    write (var('tests_on_written_rows'), by the indexed _written_at); equal_rowcount scopes itself. -#}
{% macro postgres__get_where_subquery(relation) -%}
    {%- set conditions = [] -%}
    {%- set where = config.get('where', '') -%}
    {%- if where -%}{%- do conditions.append('(' ~ where ~ ')') -%}{%- endif -%}
    {%- set date_column = var('tests_on_recomputed_days', {}).get(relation.identifier) -%}
    {%- if date_column and tests_scoped() -%}
        {%- do conditions.append(adapter.quote(date_column) ~ ' >= ' ~ lookback_start_date()) -%}
    {%- endif -%}
    {%- set test_name = ((model.get('test_metadata') or {}).get('name')) if model is mapping else none -%}
    {%- if relation.identifier in var('tests_on_written_rows', []) and test_name != 'equal_rowcount'
            and tests_scoped() -%}
        {%- do conditions.append(last_write_condition(relation)) -%}
    {%- endif -%}
    {%- if conditions -%}
        {%- do return('(select * from ' ~ relation ~ ' where ' ~ conditions | join(' and ') ~ ') dbt_subquery') -%}
    {%- else -%}
        {%- do return(relation) -%}
    {%- endif -%}
{%- endmacro %}


{#- True on a daily run (an interval, no full refresh): the tests check only what the run wrote. -#}
{% macro tests_scoped() -%}
    {{ return(has_interval() and not flags.FULL_REFRESH) }}
{%- endmacro %}


{#- The rows of the table's last write, by the database's clock; the time is read first and written in as a
    literal, so the planner reads the last write by index (35 ms) rather than every row (1.6 s at tier M). -#}
{% macro last_write_condition(relation) -%}
    {#- (a table not built yet, e.g. `dbt compile` on a new warehouse: no rows to check) -#}
    {%- if execute and adapter.get_relation(relation.database, relation.schema, relation.identifier) -%}
        {%- set last = run_query('select max(_written_at)::text from ' ~ relation).columns[0].values()[0] -%}
    {%- endif -%}
    {%- if last -%}
        {{ return("_written_at >= '" ~ last ~ "'::timestamptz") }}
    {%- else -%}
        {{ return('_written_at is null') }}
    {%- endif -%}
{%- endmacro %}


{#- A daily run's tests run without JIT, as its models do (a test has no hooks, so its query carries it). -#}
{% macro postgres__get_test_sql(main_sql, fail_calc, warn_if, error_if, limit) -%}
    {%- if tests_scoped() %}set local jit = off;
    {% endif -%}
    {{ default__get_test_sql(main_sql, fail_calc, warn_if, error_if, limit) }}
{%- endmacro %}
