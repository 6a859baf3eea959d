-- One row per open MQL at the run's data interval end: an MQL before the interval end, not (yet) an SQL then, not
-- disqualified, with how long it has waited and its owner's first call or meeting since it became an MQL (the first
-- sales touch; null while untouched). "MQLs waiting N days with no sales touch" is
-- `where is_untouched and days_waiting >= N`. Days are counted to the interval end, never the wall clock.
with

contacts as (
    select * from {{ ref('dim_contacts') }}
),

activities as (
    select * from {{ ref('int_contact_crm_activities') }}
),

settings as (
    select * from {{ ref('int_funnel_settings') }}
),

run_interval as (
    select * from {{ ref('int_run_interval') }}
),

open_mqls as (
    select contacts.*
    from contacts
    cross join run_interval
    where contacts.mql_at < run_interval.interval_end_at
        and (contacts.sql_at is null or contacts.sql_at >= run_interval.interval_end_at)
        and not contacts.is_disqualified
),

first_touches as (
    {{ first_owner_activity('open_mqls', 'mql_at') }}
),

final as (
    select
        open_mqls.contact_id,
        open_mqls.owner_id,
        open_mqls.mql_at,
        open_mqls.mql_evidence_source,
        round((extract(epoch from run_interval.interval_end_at - open_mqls.mql_at) / 86400.0)::numeric, 2)
            as days_waiting,
        first_touches.activity_at as first_sales_touch_at,
        first_touches.activity_type as first_sales_touch_type,
        first_touches.activity_at is null as is_untouched,
        open_mqls.current_score,
        open_mqls.original_source,
        open_mqls.first_touch_channel,
        open_mqls.persona,
        open_mqls.industry,
        open_mqls.company_size_band,
        settings.definition_version
    from open_mqls
    cross join run_interval
    cross join settings
    left join first_touches on open_mqls.contact_id = first_touches.contact_id
)

select * from final
