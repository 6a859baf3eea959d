{#- Data tests of the big incremental tables check, on a daily run, only the days it recomputed (from
    lookback_start_date()); a full refresh, or a run with no interval, checks every row. Older days were checked
    by the run that wrote them. The tables and their date columns: var('tests_on_recomputed_days').
    The incremental event-level tables (var('tests_on_written_rows'), macros/visitor_changes.sql) are checked, the
    same way, on the rows of the table's last write (`_written_at`, the writing transaction's time, is indexed);
    a test that compares whole tables (equal_rowcount) always sees every row.
    (dbt's own get_where_subquery wraps a test's model in `where`; this adds the day filter to it.) -#}
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


{#- The rows of the table's last write, by the database's clock (dbt's run_started_at did not scope the tests of the
    DAG's in-process Cosmos tasks); a run that wrote nothing checks that write again. The time is read first and
    written into the test as a literal: against `= (select max(_written_at) ...)` the planner cannot see that one
    write is a sliver of the table, and it scanned all 10 million staged events (1.6 s a test at tier M) instead of
    reading the last write through the index (35 ms). `>=` rather than `=`: a value past the planner's statistics
    is estimated from the index's real end, so the estimate stays small even before the table is re-analyzed. -#}
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


{#- A daily run's data tests are planned over a few days of rows, but at tier M their cost estimates still pass
    jit_above_cost: PostgreSQL JIT-compiled each for ~0.45 s of a 1.2 s test. The models switch JIT off the same
    way (jit_off_for_daily_runs, a pre-hook); a test has no hooks, so its query carries the setting (dbt runs a
    test's query in a transaction, and the last statement's rows are the result). A full build keeps JIT. -#}
{% macro postgres__get_test_sql(main_sql, fail_calc, warn_if, error_if, limit) -%}
    {%- if tests_scoped() %}set local jit = off;
    {% endif -%}
    {{ default__get_test_sql(main_sql, fail_calc, warn_if, error_if, limit) }}
{%- endmacro %}
