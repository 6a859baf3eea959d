{#- The run's data interval comes from the environment (HANDOFF_DATA_INTERVAL_START / _END, ISO-8601; the DAG
    sets them per run) or from vars of the same name (data_interval_start / _end) for a one-off `dbt --vars`.
    The environment is the default because dbt re-parses the whole project when --vars change (a `dbt run` of
    the daily selection: 12.6 s with changed --vars, 10.1 s with a changed env var), while a changed env_var
    re-parses only the files that read it. -#}
{% macro data_interval(name) -%}
    {{ return(var(name) or env_var('HANDOFF_' ~ name | upper, '') or none) }}
{%- endmacro %}

{#- Incremental models recompute the days from data_interval_start - var('lookback_days') (late events correct
    earlier days); with no interval start, or on a full refresh, they process everything. -#}
{% macro lookback_start_date() -%}
    (cast('{{ data_interval("data_interval_start") }}' as timestamptz) at time zone 'UTC')::date - {{ var('lookback_days') | int }}
{%- endmacro %}


{#- The first day an incremental model recomputes: L = lookback_start_date(); after skipped runs (the DAG does not
    catch up), the day the first missed run would have started from: the last day the model holds + 1 − lookback
    days, so the gap and the late events of the days before it are recomputed. Read from the model's own table
    before anything is deleted: fix_recompute_start keeps it for the transaction (recompute_start_date()). -#}
{% macro recompute_start_expr(date_column) -%}
    least({{ lookback_start_date() }}, coalesce(
        (select max({{ date_column }}) from {{ this }}), {{ lookback_start_date() }} - 1
    ) + 1 - {{ var('lookback_days') | int }})
{%- endmacro %}


{#- recompute_start_expr as fix_recompute_start fixed it for this model's transaction. -#}
{% macro recompute_start_date() -%}
    current_setting('handoff.recompute_start')::date
{%- endmacro %}


{% macro interval_end_date() -%}
    ((cast('{{ data_interval("data_interval_end") }}' as timestamptz) - interval '1 microsecond') at time zone 'UTC')::date
{%- endmacro %}

{#- True when this run recomputes only the days from data_interval_start - lookback_days (an incremental run with
    an interval); a full refresh, or a run with no interval, recomputes everything. -#}
{% macro recomputes_range() -%}
    {{ return(is_incremental() and has_interval()) }}
{%- endmacro %}

{#- True when the run was given both ends of a data interval (a daily run); tests_scoped() asks it too. -#}
{% macro has_interval() -%}
    {{ return(data_interval('data_interval_start') and data_interval('data_interval_end')) }}
{%- endmacro %}

{#- Fixes recompute_start_date() for the model's transaction (a pre-hook, before anything is deleted): a setting,
    unlike a subquery, is folded into the planner's row estimates, so the recomputed days are read by index range. -#}
{% macro fix_recompute_start(date_column) -%}
    {%- if recomputes_range() -%}
        select set_config('handoff.recompute_start', ({{ recompute_start_expr(date_column) }})::text, true)
    {%- endif -%}
{%- endmacro %}

{#- Pre-hook of the dense daily tables, after fix_recompute_start and contact_changes_prepare: the rows the run
    rewrites leave first, in the same transaction, so a row that no longer holds (a rule that stopped firing after
    late events) does not linger: every contact's from fresh_start_date() to the interval end, the recomputed
    contacts' on the lookback days before it (macros/contact_changes.sql). Days after the interval end (a rerun of
    an older day) are kept. The recomputed contacts' rows leave by index probes; the lookback delete for every
    contact is gated on the setting (a one-time filter). -#}
{% macro delete_recomputed_days(date_column) -%}
    {%- if recomputes_range() -%}
        delete from {{ this }}
        where {{ date_column }} between {{ fresh_start_date() }} and {{ interval_end_date() }};
        delete from {{ this }}
        where {{ date_column }} >= {{ recompute_start_date() }} and {{ date_column }} < {{ fresh_start_date() }}
            and current_setting('handoff.recompute_all')::boolean;
        delete from {{ this }} as held
        using ({{ _lookback_keys(date_column) }}) as keys
        where held.{{ date_column }} = keys.{{ date_column }} and held.contact_id = keys.contact_id
    {%- elif is_incremental() -%}
        delete from {{ this }}
    {%- else -%}
        select 1
    {%- endif -%}
{%- endmacro %}


{#- Pre-hook of fct_contact_engagement_daily, after fix_recompute_start: a daily run recomputes every contact's
    days from L to the interval end (facts_in_scope), so their held rows leave first, in the same transaction. The
    delete+insert on (contact_id, activity_date) replaces only the keys the run writes: a contact-day that no
    longer has any fact (its meetings CANCELED or NO_SHOW, the contact gone from the CRM, a device stitched to
    another contact) would otherwise keep its old row, where a full refresh has none. Older days that gained facts
    are still merged by key; days after the interval end (a rerun of an older day) are kept. An index range on the
    day (the unique index leads with it). An incremental run with no interval recomputes every day: everything
    leaves, as in delete_recomputed_days. -#}
{% macro delete_recomputed_window(date_column) -%}
    {%- if recomputes_range() -%}
        delete from {{ this }}
        where {{ date_column }} between {{ recompute_start_date() }} and {{ interval_end_date() }}
    {%- elif is_incremental() -%}
        delete from {{ this }}
    {%- else -%}
        select 1
    {%- endif -%}
{%- endmacro %}


{#- The last line of a dense daily model: a full build writes its rows in day order (see daily_table_config). A
    daily run does not sort: its few days land together at the end of the heap anyway, and sorting them cost
    rule hits 3.5 of its 15 s at 100,000 contacts. -#}
{% macro daily_table_order(date_column='score_date') -%}
    {%- if not recomputes_range() -%}
    order by {{ date_column }}, contact_id
    {%- endif -%}
{%- endmacro %}

{#- A daily run's statements over a few days are planned with row estimates far too high (generate_series, CTEs),
    so PostgreSQL JIT-compiled each for ~0.8 s of a 4 s query; a full build keeps JIT. -#}
{% macro jit_off_for_daily_runs() -%}
    {%- if recomputes_range() -%}set local jit = off{%- endif -%}
{%- endmacro %}

{#- The config of the dense daily tables (one row per contact per day, recomputed days deleted then appended):
    `{{ config(**daily_table_config()) }}`. The unique index refuses a duplicate day. It leads with the day, so a
    run's rows go to the right edge of the btree rather than into every contact's leaf pages; and the models write
    their rows in day order (daily_table_order), so the days a run recomputes sit together at the end of the heap
    rather than one row in every page. At 100,000 contacts, after a full refresh, the one-day steps of scores /
    scores mart / rule hits went from 96 / 79 / 65 s to 17 / 8 / 29 s with both changes.
    A table with several rows per contact and day (rule hits: one per rule) passes unique=false; pre_hooks run
    first (before anything is decided). Which contacts a daily run rewrites on the lookback days
    (macros/contact_changes.sql): `upstream` names the dense model whose change log this one reads, `inputs` a
    macro giving the model's other inputs as (kind, key, value) rows, `change_hooks` more pre-hooks that add contacts
    (features), and `log_changes` whether a model after it reads this one's log.
    Built whole, the table gets fillfactor 90 for the rows that later runs insert (the full build itself packs its
    pages). Without it, once autovacuum has recorded the few hundred bytes left in every packed page, a daily run's
    rows land one or two per page all over the heap, and deleting them the next time reads most of it: at 100,000
    contacts the last four days' 400,000 score rows sat on 160,000 of 855,000 pages and the scores step took 231 s.
    With it they fill the pages freed by the previous run's days: about 40,000 pages, the step 13 s. -#}
{% macro daily_table_config(date_column='score_date', unique=true, pre_hooks=[], upstream=none, inputs=none,
                            change_hooks=[], log_changes=true) -%}
    {%- set up = ("'" ~ upstream ~ "'") if upstream else 'none' -%}
    {%- set ins = (inputs ~ '()') if inputs else 'none' -%}
    {%- do return({
        'materialized': 'incremental',
        'unlogged': false,
        'incremental_strategy': 'append',
        'on_schema_change': 'fail',
        'indexes': [{'columns': [date_column, 'contact_id'], 'unique': unique}],
        'pre_hook': ["{{ jit_off_for_daily_runs() }}"] + pre_hooks
                    + ["{{ fix_recompute_start('" ~ date_column ~ "') }}",
                       "{{ contact_changes_prepare(" ~ up ~ ", " ~ ins ~ ") }}"]
                    + change_hooks
                    + ["{{ delete_recomputed_days('" ~ date_column ~ "') }}"],
        'post_hook': ["{% if not is_incremental() %}alter table {{ this }} set (fillfactor = 90){% endif %}",
                      "{{ contact_changes_record(" ~ up ~ ", " ~ ins ~ ", " ~ (log_changes | string | lower) ~ ") }}"],
    }) -%}
{%- endmacro %}

{#- Project-wide post-hook (dbt_project.yml): an incremental model built whole (first run, full refresh) gets its
    planner statistics at once. Without them the next daily run planned its reads of the new 10-million-row tables
    blind and scanned them whole where an index range was the plan (the scoped not_null tests on the scores: a
    parallel scan of 6.5 GB instead of 4 days); autovacuum gets to such a table only later. About a second per
    big table. -#}
{% macro analyze_if_rebuilt() -%}
    {%- if model.config.materialized == 'incremental' and not is_incremental() -%}
    analyze {{ this }}
    {%- endif -%}
{%- endmacro %}
