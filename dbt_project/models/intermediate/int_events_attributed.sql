{{ config(pre_hook="{{ attribution_changes_prepare() }}", post_hook="{{ attribution_changes_record() }}",
          **appended_table_config([{'columns': ['event_id'], 'unique': true},
                                   {'columns': ['visitor_key', 'event_at']}, {'columns': ['_written_at']}])) }}
-- Every analytics event with its contact (userId, or the stitched anonymous device), its catalog content and
-- the behaviour feature it counts for (event names map through the definition's event map, never code).
-- Incremental (macros/visitor_changes.sql): a run recomputes the events of new load batches, of devices whose
-- identity changed and of userIds whose contact appeared or went (all of them when the catalog or event map
-- changed): its pre-hook deletes their rows, the run appends them anew, and the visitors whose events changed
-- (before and after) go to the log for sessions, facts and touchpoints. Logged, not unlogged: the table carries
-- state from run to run.
with

events as (
    select * from {{ ref('stg_analytics__events') }}
    {% if is_incremental() %}
    where event_id in (select event_id from pg_temp.handoff_attribution_dirty)
    {% endif %}
),

identities as (
    select * from {{ ref('int_identities_stitched') }}
),

contacts as (
    select * from {{ ref('stg_crm__contacts') }}
),

catalog as (
    select * from {{ ref('content_catalog') }}
),

event_map as (
    select * from {{ ref('funnel_event_map') }}
),

attributed as (
    select
        events.*,
        coalesce(known.contact_id, identities.contact_id) as contact_id,
        known.contact_id is null and identities.contact_id is not null as is_stitched,
        case when known.contact_id is null then identities.identified_at end as stitched_at
    from events
    left join contacts as known
        on events.user_id = known.contact_id
    left join identities
        on events.anonymous_id = identities.anonymous_id
),

final as (
    select
        attributed.event_id,
        attributed.event_type,
        attributed.event_name,
        attributed.anonymous_id,
        attributed.contact_id,
        coalesce('c:' || attributed.contact_id, 'a:' || attributed.anonymous_id) as visitor_key,
        attributed.is_stitched,
        attributed.event_at,
        attributed.received_at,
        attributed.event_date,
        -- the day the event counts for the contact in its scores: the day it happened, or for an anonymous
        -- device's earlier events the day the device was identified (not known to be the contact's before).
        -- Late-received events count on the day they happened: the incremental lookback re-scores that day.
        greatest(attributed.event_date, {{ utc_date('attributed.stitched_at') }}) as known_date,
        attributed.page_path,
        attributed.referrer,
        attributed.utm_source,
        attributed.utm_medium,
        attributed.utm_campaign,
        coalesce(page_content.path, asset_content.path) as content_path,
        coalesce(page_content.title, asset_content.title) as content_title,
        coalesce(page_content.content_type, asset_content.content_type) as content_type,
        case when attributed.event_type = 'page' then
            -- catalog content types that are behaviour features of their own
            case page_content.content_type
                when 'pricing' then 'pricing_page_views'
                when 'comparison' then 'comparison_page_views'
                when 'careers' then 'careers_page_views'
            end
        end as page_feature,
        case
            when event_map.feature = 'downloads' then 'downloads_' || asset_content.buying_stage
            else event_map.feature
        end as track_feature,
        -- the run that wrote the row: a daily run's tests check the rows it wrote (macros/tests_scope.sql)
        transaction_timestamp() as _written_at
    from attributed
    left join catalog as page_content
        on attributed.event_type = 'page'
        and attributed.page_path = page_content.path
    left join event_map
        on attributed.event_type = 'track'
        and attributed.event_name = event_map.event_name
    left join catalog as asset_content
        on event_map.feature = 'downloads'
        and coalesce(attributed.asset_path, attributed.page_path) = asset_content.path
)

select * from final
