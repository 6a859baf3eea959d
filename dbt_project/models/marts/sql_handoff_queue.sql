{{ config(grants={'select': ['handoff_pusher', 'handoff_bi_reader']}) }}
-- New SQLs our rules found that the CRM has not acknowledged yet (see stg_ops__crm_push_acknowledged).
-- SQLs a rep set in the CRM, or inferred from a deal, are already in the CRM and are not queued.
with

contacts as (
    select * from {{ ref('dim_contacts') }}
),

transitions as (
    select * from {{ ref('fct_stage_transitions') }}
),

scores as (
    select * from {{ ref('int_contact_scores_daily') }}
),

touchpoints as (
    select * from {{ ref('int_contact_touchpoints') }}
),

acknowledged as (
    select * from {{ ref('stg_ops__crm_push_acknowledged') }}
),

run_interval as (
    select * from {{ ref('int_run_interval') }}
),

new_sqls as (
    select
        contacts.*,
        -- deterministic: the same SQL event always gets the same key (the CRM task's handoff_dedupe_key)
        md5(contacts.contact_id || '|'
            || to_char(contacts.sql_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')) as dedupe_key
    from contacts
    cross join run_interval
    where contacts.sql_at is not null
        and contacts.sql_at < run_interval.interval_end_at
        and contacts.sql_evidence_source = 'rules'
        and not contacts.sql_inferred
        and not contacts.is_disqualified
        and contacts.current_stage = 'sql'
),

sql_transitions as (
    select contact_id, rule_ids
    from transitions
    where to_stage = 'sql'
),

mql_transitions as (
    select contact_id, rule_ids, rule_details
    from transitions
    where to_stage = 'mql'
),

sql_day_scores as (
    select scores.contact_id, scores.score, scores.rule_ids
    from scores
    inner join new_sqls
        on scores.contact_id = new_sqls.contact_id
        and scores.score_date = {{ utc_date('new_sqls.sql_at') }}
),

final as (
    select
        new_sqls.dedupe_key,
        new_sqls.contact_id,
        new_sqls.crm_contact_id,
        new_sqls.owner_id,
        new_sqls.sql_at,
        new_sqls.mql_at,
        new_sqls.mql_inferred,
        coalesce(sql_day_scores.score, 0) as score_at_sql,
        new_sqls.current_score as score,
        array(
            select distinct unnest(
                coalesce(sql_transitions.rule_ids, array[]::text[])
                || coalesce(mql_transitions.rule_ids, array[]::text[])
                || coalesce(sql_day_scores.rule_ids, array[]::text[])
            ) order by 1
        ) as rules_fired,
        mql_transitions.rule_details as mql_rule_details,
        -- what the owner reads in the CRM: which rules made this lead an SQL (and, before that, an MQL)
        concat_ws('; ',
            'SQL: ' || nullif(array_to_string(sql_transitions.rule_ids, ', '), ''),
            'MQL: ' || nullif(array_to_string(mql_transitions.rule_ids, ', '), ''),
            'score at SQL: ' || round(coalesce(sql_day_scores.score, 0), 1)::text
        ) as reasons,
        touchpoints.top_content,
        touchpoints.first_touch_channel,
        new_sqls.original_source,
        touchpoints.last_activity_at,
        new_sqls.persona,
        new_sqls.industry,
        new_sqls.company_size_band,
        new_sqls.definition_version
    from new_sqls
    left join acknowledged on new_sqls.dedupe_key = acknowledged.dedupe_key
    left join sql_transitions on new_sqls.contact_id = sql_transitions.contact_id
    left join mql_transitions on new_sqls.contact_id = mql_transitions.contact_id
    left join sql_day_scores on new_sqls.contact_id = sql_day_scores.contact_id
    left join touchpoints on new_sqls.contact_id = touchpoints.contact_id
    where acknowledged.dedupe_key is null
)

select * from final
