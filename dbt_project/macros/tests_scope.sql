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
    {%- if date_column and data_interval('data_interval_start') and data_interval('data_interval_end')
            and not flags.FULL_REFRESH -%}
        {%- do conditions.append(adapter.quote(date_column) ~ ' >= ' ~ lookback_start_date()) -%}
    {%- endif -%}
    {%- set test_name = ((model.get('test_metadata') or {}).get('name')) if model is mapping else none -%}
    {%- if relation.identifier in var('tests_on_written_rows', []) and test_name != 'equal_rowcount'
            and data_interval('data_interval_start') and data_interval('data_interval_end')
            and not flags.FULL_REFRESH -%}
        {#- the table's last write (by the database's clock: dbt's run_started_at did not scope the tests of
            the DAG's in-process Cosmos tasks); a run that wrote nothing checks that write again -#}
        {%- do conditions.append('_written_at = (select max(_written_at) from ' ~ relation ~ ')') -%}
    {%- endif -%}
    {%- if conditions -%}
        {%- do return('(select * from ' ~ relation ~ ' where ' ~ conditions | join(' and ') ~ ') dbt_subquery') -%}
    {%- else -%}
        {%- do return(relation) -%}
    {%- endif -%}
{%- endmacro %}
