{#- The dense daily tables (features → rule hits → scores → the scores mart) on a daily run: the new days for every
    contact, the lookback days only for the contacts whose rows there can differ.

    A daily run recomputes the days from L = recompute_start_date() (data_interval_start − lookback_days, earlier
    after skipped runs) to the interval end. From F = fresh_start_date() (the interval start, or the first day the
    table does not hold yet) every contact's row is new and is written. The days L … F − 1 are held already; late
    events change them for a few contacts only (at 100,000 contacts, about a hundred of the day's 127,414 events
    carry an earlier day's time), so only those contacts' rows there are rewritten — a quarter of the rows a run
    wrote when it rewrote all four days for everyone.

    Which contacts (pg_temp.handoff_recomputed_contacts, or the setting handoff.recompute_all for every contact):
    - features (the first): the contacts whose facts known on L … F − 1 differ, per day and feature, from the counts
      its held rows carry (a fact added, changed or retracted), plus those new or gone since its last held day, or
      whose lead date moved (features_changed_contacts);
    - the models after it: the contacts the model before logged (`<model>__contact_changes`, read from the consumer's
      watermark in handoff_contact_watermarks, as the event-level models read the attribution's change log,
      macros/visitor_changes.sql), plus what the model reads besides: a changed funnel definition (rule hits: every
      contact), a contact whose fit rule hits changed (scores), settings its held rows no longer agree with (the
      scores mart: every contact).
    Each model logs the contacts it rewrote ('*' when it rewrote everyone, or was built whole) in the transaction of
    its rows, and the consumer moves its watermark, and prunes what it read, in the transaction of its own: a model
    that fails, or a run that is skipped, leaves the log to the next run. A model with no watermark yet (built with
    none, or a table from before the log) rewrites every contact once.
    The rows kept are exactly what a full refresh computes: a row of day d is derived from facts known up to d and
    from the contact's attributes; facts known before L do not change after the lookback (as everywhere here), and
    between L and F − 1 they did not change for a contact outside the set. -#}

{% macro contact_changes_log(relation) -%}{{ return(_suffixed(relation, '__contact_changes')) }}{%- endmacro %}

{% macro contact_watermarks(relation) -%}
    {{ return(relation.incorporate(path={'identifier': 'handoff_contact_watermarks'})) }}
{%- endmacro %}

{#- F: the first day every contact's row is written (the lookback days come before it). -#}
{% macro fresh_start_date() -%}
    ({{ recompute_start_date() }} + {{ var('lookback_days') | int }})
{%- endmacro %}

{#- The rows a daily run writes, as a condition on `alias` (contact_id and date_column): every contact from F, the
    recomputed contacts before it. Nothing on a full refresh. For rows computed in the model (features). -#}
{% macro recomputed_rows(alias, date_column='score_date') -%}
    {%- if recomputes_range() -%}
    and ({{ alias }}.{{ date_column }} >= {{ fresh_start_date() }}
        or current_setting('handoff.recompute_all')::boolean
        or {{ alias }}.contact_id in (select contact_id from pg_temp.handoff_recomputed_contacts))
    {%- endif -%}
{%- endmacro %}

{#- The (date, contact) keys of the recomputed contacts' lookback days: an index probe each into a dense table,
    rather than a pass over every contact's lookback days to find a few hundred (an integer series, which the
    planner counts right). -#}
{% macro _lookback_keys(date_column) -%}
    select {{ recompute_start_date() }} + day_offset as {{ date_column }}, changed.contact_id
    from pg_temp.handoff_recomputed_contacts as changed
    cross join generate_series(0, {{ var('lookback_days') | int }} - 1) as day_offset
{%- endmacro %}

{#- What a run reads of a dense table `relation` (an upstream model): on a daily run, every contact's rows from F
    to the interval end and the recomputed contacts' rows on the lookback days (all of them when every contact is);
    otherwise every row. -#}
{% macro recomputed_rows_of(relation, date_column='score_date') -%}
    {%- if not recomputes_range() -%}
    select * from {{ relation }}
    {%- else -%}
    select * from {{ relation }}
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

{#- A dense model's pre-hook (after fix_recompute_start): the contacts to recompute on the lookback days, from the
    log of `upstream` (a model name; none for the first model) and, when given, the model's own applied inputs
    (`inputs_sql`, (kind, key, value) rows, macros/visitor_changes.sql applied_inputs_diff): a changed
    'definition' row means every contact, a changed 'contact' row that contact. -#}
{% macro contact_changes_prepare(upstream=none, inputs_sql=none) -%}
    {%- if inputs_sql %}
    {{ applied_inputs_diff('handoff_contact', inputs_sql) }};
    {%- endif %}
    {%- if recomputes_range() %}
    create temp table handoff_recomputed_contacts (contact_id text primary key) on commit drop;
    select set_config('handoff.recompute_all', 'false', true);
    {%- if upstream %}
    {%- set log = contact_changes_log(ref(upstream)) %}
    {%- set watermarks = contact_watermarks(ref(upstream)) %}
    create table if not exists {{ log }} (changed_at timestamptz not null, contact_id text not null);
    create table if not exists {{ watermarks }} (model text primary key, changes_to timestamptz not null);
    select set_config('handoff.contact_changes_to',
        coalesce((select max(changed_at) from {{ log }}), '-infinity'::timestamptz)::text, true);
    insert into handoff_recomputed_contacts (contact_id)
        select distinct contact_id from {{ log }}
        where changed_at > coalesce((select changes_to from {{ watermarks }} where model = '{{ this.identifier }}'),
                                    '-infinity'::timestamptz)
            and changed_at <= current_setting('handoff.contact_changes_to')::timestamptz;
    select set_config('handoff.recompute_all', 'true', true)
    where not exists (select 1 from {{ watermarks }} where model = '{{ this.identifier }}')
        or exists (select 1 from handoff_recomputed_contacts where contact_id = '*');
    {%- endif %}
    {%- if inputs_sql %}
    select set_config('handoff.recompute_all', 'true', true)
    where exists (select 1 from handoff_contact_changed where kind = 'definition');
    insert into handoff_recomputed_contacts (contact_id)
        select key from handoff_contact_changed where kind = 'contact'
    on conflict do nothing;
    {%- endif %}
    analyze handoff_recomputed_contacts
    {%- else %}
    select 1
    {%- endif %}
{%- endmacro %}

{#- int_contact_features_daily's pre-hook (after contact_changes_prepare): the contacts whose rows on L … F − 1 can
    differ. Its held rows carry, per day, the count of each behaviour feature's facts known that day (activity_date
    set when there was any); the facts known on those days now are counted the same way, and any contact × day that
    differs either way is a change. A contact with no held row on F − 1 (new) or gone from the CRM since, or whose
    lead date moved, is one too. Reads three days of each table by index. -#}
{% macro features_changed_contacts() -%}
    {%- if recomputes_range() %}
    insert into handoff_recomputed_contacts (contact_id)
    with known_now as (
        select
            contact_id,
            known_date,
            {%- for feature in behaviour_features() %}
            count(*) filter (where feature = '{{ feature }}') as {{ feature }}{{ ',' if not loop.last }}
            {%- endfor %}
        from {{ ref('int_contact_engagement_facts') }}
        where known_date >= {{ recompute_start_date() }} and known_date < {{ fresh_start_date() }}
        group by contact_id, known_date
    ),
    known_held as (
        select contact_id, score_date as known_date,
            {%- for feature in behaviour_features() %}
            {{ feature }}{{ ',' if not loop.last }}
            {%- endfor %}
        from {{ this }}
        where score_date >= {{ recompute_start_date() }} and score_date < {{ fresh_start_date() }}
            and activity_date is not null
    ),
    last_held as (
        select contact_id, lead_date from {{ this }}
        where score_date = {{ fresh_start_date() }} - 1
    )
    select coalesce(known_now.contact_id, known_held.contact_id)
    from known_now
    full join known_held
        on known_now.contact_id = known_held.contact_id
        and known_now.known_date = known_held.known_date
    where known_now.contact_id is null or known_held.contact_id is null
        {%- for feature in behaviour_features() %}
        or known_now.{{ feature }} <> known_held.{{ feature }}
        {%- endfor %}
    union
    select coalesce(contacts.contact_id, last_held.contact_id)
    from {{ ref('int_contacts_enriched') }} as contacts
    full join last_held
        on contacts.contact_id = last_held.contact_id
    where contacts.contact_id is null or last_held.contact_id is null
        or last_held.lead_date is distinct from {{ utc_date('contacts.lead_at') }}
    on conflict do nothing;
    analyze handoff_recomputed_contacts
    {%- else %}
    select 1
    {%- endif %}
{%- endmacro %}

{#- A dense model's post-hook: the contacts it rewrote go to its log ('*': everyone, or built whole) for the model
    after it; with `upstream`, its watermark on that model's log moves to what it read, and what it read leaves. -#}
{% macro contact_changes_record(upstream=none, inputs_sql=none, log_changes=true) -%}
    {%- if inputs_sql %}
    {{ applied_inputs_record('handoff_contact', inputs_sql) }};
    {%- endif %}
    {%- if log_changes %}
    {%- set log = contact_changes_log(this) %}
    create table if not exists {{ log }} (changed_at timestamptz not null, contact_id text not null);
    {%- if recomputes_range() %}
    insert into {{ log }} (changed_at, contact_id)
        select now(), contact_id from pg_temp.handoff_recomputed_contacts
        where not current_setting('handoff.recompute_all')::boolean
        union all
        select now(), '*' where current_setting('handoff.recompute_all')::boolean;
    {%- else %}
    insert into {{ log }} (changed_at, contact_id) values (now(), '*');
    {%- endif %}
    {%- endif %}
    {%- if upstream %}
    {%- set read = contact_changes_log(ref(upstream)) %}
    {%- set watermarks = contact_watermarks(ref(upstream)) %}
    create table if not exists {{ read }} (changed_at timestamptz not null, contact_id text not null);
    create table if not exists {{ watermarks }} (model text primary key, changes_to timestamptz not null);
    insert into {{ watermarks }} (model, changes_to)
    values ('{{ this.identifier }}',
        {%- if recomputes_range() %}
        current_setting('handoff.contact_changes_to')::timestamptz
        {%- else %}
        coalesce((select max(changed_at) from {{ read }}), '-infinity'::timestamptz)
        {%- endif %})
    on conflict (model) do update set changes_to = excluded.changes_to;
    delete from {{ read }}
    where changed_at <= (select changes_to from {{ watermarks }} where model = '{{ this.identifier }}');
    {%- endif %}
    select 1
{%- endmacro %}

{#- Rule hits' applied inputs: the behaviour rules and the settings they read (the half-life); a change means every
    contact. -#}
{% macro rule_hits_inputs() -%}
    select 'definition'::text as kind, 'funnel_rules, int_funnel_settings'::text as key, md5(
        coalesce((select string_agg(r::text, ',' order by r::text) from {{ ref('funnel_rules') }} as r), '') || '/'
        || coalesce((select string_agg(s::text, ',') from {{ ref('int_funnel_settings') }} as s), '')) as value
{%- endmacro %}

{#- Scores' applied inputs: each contact's fit rule hits (fit attributes are the contact's current ones: a changed
    one rewrites the contact's lookback days too; a changed behaviour rule reaches scores as rule hits' '*'). -#}
{% macro scores_inputs() -%}
    select 'contact'::text as kind, contact_id::text as key, md5(string_agg(
        concat_ws('|', rule_id, points::text, value_num::text, value_text), ',' order by rule_id)) as value
    from {{ ref('int_contact_fit_rule_hits') }}
    group by contact_id
{%- endmacro %}

{#- fct_contact_scores_daily's pre-hook: a row is its score row plus what the settings make of it (meets_mql_rule,
    definition_version); when a held row on the lookback days no longer agrees with the settings, every contact's
    lookback days are rewritten. (Its state stays in the row: no applied-input copy next to a mart.) -#}
{% macro scores_mart_settings_changed() -%}
    {%- if recomputes_range() %}
    -- an aggregate over the lookback days' index range (as an exists it was planned as a scan of the whole table)
    select set_config('handoff.recompute_all', 'true', true)
    from (
        select bool_or(held.definition_version is distinct from settings.definition_version
                       or held.meets_mql_rule is distinct from (held.score >= settings.mql_score_threshold
                                                                and held.fit_score >= settings.mql_min_fit_score))
            as disagrees
        from {{ this }} as held
        cross join {{ ref('int_funnel_settings') }} as settings
        where held.score_date >= {{ recompute_start_date() }} and held.score_date < {{ fresh_start_date() }}
    ) as checked
    where checked.disagrees
    {%- else %}
    select 1
    {%- endif %}
{%- endmacro %}
