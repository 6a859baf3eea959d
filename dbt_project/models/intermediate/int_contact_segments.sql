-- Every contact under each segment type the definition reports (conversion.segments): all / original_source /
-- first_touch_channel (the first web session's source / medium) / persona / industry / company_size_band, with its
-- MQL and SQL times. A missing value (null in dim_contacts) is
-- '(none)', kept apart from a value the CRM itself sends (a source or persona literally called 'unknown').
with

contacts as (
    select * from {{ ref('int_contacts_enriched') }}
),

stages as (
    select * from {{ ref('int_contact_stages_assigned') }}
),

touchpoints as (
    select * from {{ ref('int_contact_touchpoints') }}
),

lists as (
    select * from {{ ref('funnel_lists') }}
),

unpivoted as (
    select
        contacts.contact_id,
        segments.segment_type,
        coalesce(segments.segment_value, '(none)') as segment_value
    from contacts
    left join touchpoints on contacts.contact_id = touchpoints.contact_id
    cross join lateral (
        values
            ('all', 'all'),
            ('original_source', contacts.original_source),
            ('first_touch_channel', touchpoints.first_touch_channel),
            ('persona', contacts.persona),
            ('industry', contacts.industry),
            ('company_size_band', contacts.company_size_band)
    ) as segments (segment_type, segment_value)
),

final as (
    select
        unpivoted.contact_id,
        unpivoted.segment_type,
        unpivoted.segment_value,
        stages.mql_at,
        stages.sql_at
    from unpivoted
    inner join lists
        on lists.list_name = 'segments'
        and lists.value = unpivoted.segment_type
    inner join stages
        on unpivoted.contact_id = stages.contact_id
)

select * from final
