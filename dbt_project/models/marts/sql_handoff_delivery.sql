{{ config(materialized='view') }}
-- One row per rule-based SQL handed to the CRM, or waiting to be: where its delivery stands, for BI (which cannot
-- read ops.crm_push_log). A view, on purpose: the push runs after the day's dbt build, so a table would still show
-- as queued the SQLs the push has delivered since; the view reads the push log when it is queried.
-- queued: in sql_handoff_queue with no attempt yet; delivered: its follow-up task was created in the CRM; skipped:
-- the CRM already had the contact at opportunity or later; parked: it cannot be pushed (the reason says why);
-- retrying: attempted, not acknowledged yet (the next run tries again).
with

queue as (
    select * from {{ ref('sql_handoff_queue') }}
),

push_log as (
    select * from {{ ref('stg_ops__crm_push_log') }}
),

acknowledged as (
    select * from {{ ref('stg_ops__crm_push_acknowledged') }}
),

settings as (
    select * from {{ ref('int_funnel_settings') }}
),

attempts as (
    select
        dedupe_key,
        min(contact_id) as contact_id,
        min(sql_at) as sql_at,
        count(distinct run_id)::integer as push_runs,
        min(attempted_at) as first_attempt_at,
        max(attempted_at) as last_attempt_at
    from push_log
    group by dedupe_key
),

handed_off as (
    select
        coalesce(attempts.dedupe_key, queue.dedupe_key) as dedupe_key,
        coalesce(attempts.contact_id, queue.contact_id) as contact_id,
        coalesce(attempts.sql_at, queue.sql_at) as sql_at,
        case
            when acknowledged.outcome = 'succeeded' then 'delivered'
            when acknowledged.outcome in ('skipped', 'parked') then acknowledged.outcome
            when attempts.dedupe_key is not null then 'retrying'
            else 'queued'
        end as delivery_status,
        coalesce(attempts.push_runs, 0) as push_runs,
        attempts.first_attempt_at,
        attempts.last_attempt_at,
        acknowledged.acknowledged_at,
        acknowledged.crm_object_id as crm_task_id,
        acknowledged.reason
    from attempts
    full outer join queue on attempts.dedupe_key = queue.dedupe_key
    left join acknowledged on coalesce(attempts.dedupe_key, queue.dedupe_key) = acknowledged.dedupe_key
),

final as (
    select
        handed_off.dedupe_key,
        handed_off.contact_id,
        handed_off.sql_at,
        handed_off.delivery_status,
        handed_off.push_runs,
        handed_off.first_attempt_at,
        handed_off.last_attempt_at,
        handed_off.acknowledged_at,
        case when handed_off.delivery_status = 'delivered' then handed_off.crm_task_id end as crm_task_id,
        handed_off.reason,
        settings.definition_version
    from handed_off
    cross join settings
)

select * from final
