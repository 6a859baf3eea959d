-- Per contact: first touch (the first session's source/medium), last known activity (web or CRM), and the top
-- content it consumed (catalog titles by views and downloads). The web part is int_contact_web_touchpoints
-- (incremental by contact); this joins the CRM activities, which are small and rebuilt whole.
with

web as (
    select * from {{ ref('int_contact_web_touchpoints') }}
),

activities as (
    select * from {{ ref('int_contact_crm_activities') }}
),

last_crm_activity as (
    select contact_id, max(activity_at) as last_activity_at
    from activities
    group by contact_id
),

final as (
    select
        coalesce(web.contact_id, last_crm_activity.contact_id) as contact_id,
        web.first_touch_at,
        web.first_touch_source,
        web.first_touch_medium,
        web.first_touch_campaign,
        web.first_touch_source || ' / ' || web.first_touch_medium as first_touch_channel,
        -- greatest() skips nulls: the later of the two, or the one there is
        greatest(web.last_event_at, last_crm_activity.last_activity_at) as last_activity_at,
        web.top_content
    from web
    full join last_crm_activity on web.contact_id = last_crm_activity.contact_id
)

select * from final
