-- One row per contact × stage reached before the run's data interval end: when the contact entered the stage, when
-- it left it for the next stage (in fct_stage_transitions' order: by time, the funnel order breaking ties) and how
-- many days it spent there, or has spent so far (up to the interval end, never the wall clock) while it is the
-- contact's latest stage. The next stage is found through fct_stage_transitions' from_stage, so the order, ties
-- included, is the one that mart already decides, not a second copy of it.
with

transitions as (
    select * from {{ ref('fct_stage_transitions') }}
),

run_interval as (
    select * from {{ ref('int_run_interval') }}
),

known as (
    -- a stage reached at or after the interval end is not known yet; the stages after it are later still
    select transitions.*
    from transitions
    cross join run_interval
    where transitions.transitioned_at < run_interval.interval_end_at
),

final as (
    select
        md5(entered.contact_id || '|' || entered.to_stage) as stage_duration_id,
        entered.contact_id,
        entered.to_stage as stage,
        entered.transitioned_at as entered_at,
        exited.transitioned_at as exited_at,
        exited.to_stage as next_stage,
        round(
            extract(epoch from coalesce(exited.transitioned_at, run_interval.interval_end_at) - entered.transitioned_at)
            / 86400,
            6
        ) as days_in_stage,
        exited.contact_id is null as is_current,
        entered.is_inferred,
        entered.definition_version
    from known as entered
    left join known as exited
        on entered.contact_id = exited.contact_id
        and entered.to_stage = exited.from_stage
    cross join run_interval
)

select * from final
