{#- The dense daily tables (features → rule hits → scores → the scores mart; one row per contact and day) on a
    daily run: every contact's rows from F, and on the lookback days L … F − 1 only the contacts in
    pg_temp.handoff_changes, whose inputs there changed ('*': every contact) (docs/incremental.md, "Dense daily
    tables"). -#}

{#- A dense table's first pre-hooks: L fixed, then the contacts to rewrite: those the model before it logged
    (`upstream`), plus those its own applied `inputs` (SQL of (kind, key, value) rows) changed: a 'contact' row
    that contact, a 'definition' row every contact. -#}
{% macro dense_rows_prepare(upstream=none, inputs=none) -%}
    {%- if recomputes_range() %}
    {{ jit_off_for_daily_runs() }};
    {{ fix_recompute_start('score_date') }};
    {%- endif %}
    {%- if upstream %}
    {{ changes_read(changes_log(ref(upstream))) }};
    {%- else %}
    create temp table handoff_changes (key text primary key, changed_from timestamptz) on commit drop;
    {%- endif %}
    {%- if inputs %}
    {{ applied_inputs_diff('handoff_contact', inputs) }}
    {%- if is_incremental() %}
    insert into handoff_changes (key)
        select case kind when 'definition' then '*' else key end from handoff_contact_changed
    on conflict do nothing;
    {%- endif %}
    {%- endif %}
    select 1
{%- endmacro %}

{#- A dense table's post-hook: the contacts it rewrote go to its log ('*' after a whole build) when `log_changes`;
    its applied inputs and its watermark on the upstream log move. -#}
{% macro dense_rows_record(upstream=none, inputs=none, log_changes=true) -%}
    {%- if not is_incremental() %}
    alter table {{ this }} set (fillfactor = 90);
    {%- endif %}
    {%- if inputs %}
    {{ applied_inputs_record('handoff_contact', inputs) }};
    {%- endif %}
    {%- if log_changes %}
    {{ changes_tables(changes_log(this)) }};
    {{ changes_write(changes_log(this), 'select key, null::timestamptz as changed_from from pg_temp.handoff_changes'
                     if recomputes_range() else "select '*' as key, null::timestamptz as changed_from") }};
    {%- endif %}
    {%- if upstream %}
    {{ changes_applied(changes_log(ref(upstream))) }};
    {%- endif %}
    select 1
{%- endmacro %}

{#- A dense table's last pre-hook: every contact changed or not (handoff.recompute_all, a one-time filter for
    the planner); the rows the run rewrites leave first: every contact's from F to the interval
    end, the changed contacts' on L … F − 1 (by key probes; all of them when every contact changed). Days after
    the interval end (a rerun of an older day) are kept. -#}
{% macro delete_recomputed_days(date_column='score_date') -%}
    {%- if recomputes_range() -%}
        select set_config('handoff.recompute_all', exists (select 1 from handoff_changes where key = '*')::text, true);
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
    {%- endif -%}
{%- endmacro %}

{#- The (day, contact) keys of the changed contacts' lookback days: an index probe each into a dense table. -#}
{% macro _lookback_keys(date_column) -%}
    select {{ recompute_start_date() }} + day_offset as {{ date_column }}, changed.key as contact_id
    from pg_temp.handoff_changes as changed
    cross join generate_series(0, {{ var('lookback_days') | int }} - 1) as day_offset
{%- endmacro %}

{#- The rows a daily run writes, as a condition on `alias`: every contact from F, the changed contacts before it. -#}
{% macro recomputed_rows(alias, date_column='score_date') -%}
    {%- if recomputes_range() -%}
    and ({{ alias }}.{{ date_column }} >= {{ fresh_start_date() }}
        or current_setting('handoff.recompute_all')::boolean
        or {{ alias }}.contact_id in (select key from pg_temp.handoff_changes))
    {%- endif -%}
{%- endmacro %}

{#- What a run reads of an upstream dense table: on a daily run the rows it rewrites (as recomputed_rows, the
    lookback ones by key probes); otherwise every row. -#}
{% macro recomputed_rows_of(relation, date_column='score_date') -%}
    select * from {{ relation }}
    {%- if recomputes_range() %}
    where {{ date_column }} between {{ fresh_start_date() }} and {{ interval_end_date() }}
    union all
    select held.* from {{ relation }} as held
    inner join ({{ _lookback_keys(date_column) }}) as keys
        on held.{{ date_column }} = keys.{{ date_column }} and held.contact_id = keys.contact_id
    where not current_setting('handoff.recompute_all')::boolean
    union all
    select * from {{ relation }}
    where {{ date_column }} >= {{ recompute_start_date() }} and {{ date_column }} < {{ fresh_start_date() }}
        and current_setting('handoff.recompute_all')::boolean
    {%- endif -%}
{%- endmacro %}

{#- Features' pre-hook: the contacts whose lookback rows can differ. Per day, the count of each behaviour
    feature's facts known now against the counts its held rows carry; plus contacts new (no row on F − 1), gone
    from the CRM, or whose lead date moved. -#}
{% macro features_changed_contacts() -%}
    {%- if recomputes_range() %}
    insert into handoff_changes (key)
    with known_now as (
        select contact_id, known_date
            {%- for feature in behaviour_features() %}, count(*) filter (where feature = '{{ feature }}') as {{ feature }}{% endfor %}
        from {{ ref('int_contact_engagement_facts') }}
        where known_date >= {{ recompute_start_date() }} and known_date < {{ fresh_start_date() }}
        group by contact_id, known_date
    ),
    known_held as (
        select contact_id, score_date as known_date
            {%- for feature in behaviour_features() %}, {{ feature }}{% endfor %}
        from {{ this }}
        where score_date >= {{ recompute_start_date() }} and score_date < {{ fresh_start_date() }}
            and activity_date is not null
    ),
    last_held as (
        select contact_id, lead_date from {{ this }} where score_date = {{ fresh_start_date() }} - 1
    )
    select coalesce(known_now.contact_id, known_held.contact_id)
    from known_now
    full join known_held
        on known_now.contact_id = known_held.contact_id and known_now.known_date = known_held.known_date
    where known_now.contact_id is null or known_held.contact_id is null
        {%- for feature in behaviour_features() %} or known_now.{{ feature }} <> known_held.{{ feature }}{% endfor %}
    union
    select coalesce(contacts.contact_id, last_held.contact_id)
    from {{ ref('int_contacts_enriched') }} as contacts
    full join last_held on contacts.contact_id = last_held.contact_id
    where contacts.contact_id is null or last_held.contact_id is null
        or last_held.lead_date is distinct from {{ utc_date('contacts.lead_at') }}
    on conflict do nothing;
    analyze handoff_changes
    {%- endif %}
{%- endmacro %}

{#- Rule hits' input: the behaviour rules and the settings they read (a change means every contact). -#}
{% macro rule_hits_inputs() -%}
    select 'definition'::text as kind, 'funnel_rules, int_funnel_settings'::text as key, md5(
        coalesce((select string_agg(r::text, ',' order by r::text) from {{ ref('funnel_rules') }} as r), '') || '/'
        || coalesce((select string_agg(s::text, ',') from {{ ref('int_funnel_settings') }} as s), '')) as value
{%- endmacro %}

{#- Scores' inputs: each contact's fit rule hits (a changed one rewrites that contact's lookback days). -#}
{% macro scores_inputs() -%}
    select 'contact'::text as kind, contact_id::text as key, md5(string_agg(
        concat_ws('|', rule_id, points::text, value_num::text, value_text), ',' order by rule_id)) as value
    from {{ ref('int_contact_fit_rule_hits') }}
    group by contact_id
{%- endmacro %}

{#- The scores mart's pre-hook: a held lookback row that disagrees with the settings (MQL threshold, minimum fit,
    definition version) means every contact; an aggregate over the lookback range, read by index. -#}
{% macro scores_mart_settings_changed() -%}
    {%- if recomputes_range() %}
    insert into handoff_changes (key)
    select '*' from {{ this }} as held cross join {{ ref('int_funnel_settings') }} as settings
    where held.score_date >= {{ recompute_start_date() }} and held.score_date < {{ fresh_start_date() }}
    having bool_or(held.definition_version is distinct from settings.definition_version
                   or held.meets_mql_rule is distinct from (held.score >= settings.mql_score_threshold
                                                            and held.fit_score >= settings.mql_min_fit_score))
    on conflict do nothing
    {%- endif %}
{%- endmacro %}
