-- One row per stage × segment_type × segment_value with at least one contact that reached the stage before the
-- run's data interval end: how long contacts stay in the stage. The medians and p75 are over the contacts that have
-- left it (a finished stay); the contacts still in it are counted with their median age so far, apart, because a
-- stay still running is a floor, not a duration. Inferred stages (skipped, given the later stage's time, normally 0 days) are
-- counted but kept out of every median: they were never really spent in.
with

durations as (
    select * from {{ ref('fct_stage_durations') }}
),

segments as (
    select * from {{ ref('int_contact_segments') }}
),

settings as (
    select * from {{ ref('int_funnel_settings') }}
),

stays as (
    select
        durations.stage,
        segments.segment_type,
        segments.segment_value,
        durations.days_in_stage,
        durations.is_current,
        durations.is_inferred
    from durations
    inner join segments
        on durations.contact_id = segments.contact_id
),

final as (
    select
        stage,
        segment_type,
        segment_value,
        count(*) filter (where not is_current and not is_inferred)::integer as contacts_exited,
        round(
            percentile_cont(0.5) within group (order by days_in_stage)
                filter (where not is_current and not is_inferred)::numeric,
            2
        ) as median_days_in_stage,
        round(
            percentile_cont(0.75) within group (order by days_in_stage)
                filter (where not is_current and not is_inferred)::numeric,
            2
        ) as p75_days_in_stage,
        count(*) filter (where is_current and not is_inferred)::integer as contacts_current,
        round(
            percentile_cont(0.5) within group (order by days_in_stage)
                filter (where is_current and not is_inferred)::numeric,
            2
        ) as median_days_current,
        count(*) filter (where is_inferred)::integer as contacts_inferred
    from stays
    group by stage, segment_type, segment_value
)

select
    final.*,
    settings.definition_version
from final
cross join settings
