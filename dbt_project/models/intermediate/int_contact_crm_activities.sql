-- CRM meetings and calls per associated contact (the owner's follow-ups, and the `meetings` behaviour feature).
with

meetings as (
    select * from {{ ref('stg_crm__meetings') }}
),

calls as (
    select * from {{ ref('stg_crm__calls') }}
),

unioned as (
    select
        meeting_id as activity_id,
        'meeting' as activity_type,
        meeting_outcome as outcome,
        owner_id,
        activity_at,
        created_at,
        contact_ids,
        is_archived
    from meetings
    union all
    select
        call_id as activity_id,
        'call' as activity_type,
        call_disposition as outcome,
        owner_id,
        activity_at,
        created_at,
        contact_ids,
        is_archived
    from calls
),

final as (
    select
        unioned.activity_type || ':' || unioned.activity_id as activity_key,
        unioned.activity_id,
        unioned.activity_type,
        unioned.outcome,
        unioned.owner_id,
        contact_ids.contact_id,
        unioned.activity_at,
        unioned.created_at,
        {{ utc_date('unioned.activity_at') }} as activity_date,
        -- known once it happened and was recorded in the CRM
        {{ utc_date('greatest(unioned.activity_at, coalesce(unioned.created_at, unioned.activity_at))') }}
            as known_date,
        coalesce(unioned.outcome, '') not in ('CANCELED', 'NO_SHOW') as is_held_or_scheduled
    from unioned
    cross join lateral unnest(unioned.contact_ids) as contact_ids (contact_id)
    where not unioned.is_archived
        and unioned.activity_at is not null
)

select * from final
