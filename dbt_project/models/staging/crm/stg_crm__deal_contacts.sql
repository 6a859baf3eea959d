-- The deal -> contact associations (associations.contacts.results) of the latest version of each deal.
with

source as (
    select * from {{ source('crm', 'crm_deals') }}
),

latest as (
    {{ latest_version('source') }}
),

final as (
    select distinct
        latest.record_id as deal_id,
        assoc ->> 'id' as contact_id
    from latest
    cross join lateral jsonb_array_elements(
        case when jsonb_typeof(latest.record -> 'associations' -> 'contacts' -> 'results') = 'array'
            then latest.record -> 'associations' -> 'contacts' -> 'results' else '[]'::jsonb end
    ) as assoc
    where assoc ->> 'id' is not null
)

select * from final
