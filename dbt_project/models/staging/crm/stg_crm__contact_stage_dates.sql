-- The dates the CRM records for each lifecycle stage a contact entered, one row per contact × property with a
-- value (latest contact version): HubSpot's `hs_lifecyclestage_<stage>_date` ("Became a ... Date" in an export)
-- and `hs_v2_date_entered_<stage>`, for every stage value they carry (the extract and the CSV mapping ask for the five
-- standard stages; a custom stage mapped by hand is read too). Values are ISO-8601 or epoch
-- milliseconds; one that is neither stays out (its property is named in no row).
with

source as (
    select * from {{ source('crm', 'crm_contacts') }}
),

latest as (
    {{ latest_version('source') }}
),

properties as (
    select
        latest.record_id as contact_id,
        props.key as property,
        coalesce(
            substring(props.key from '^hs_lifecyclestage_(.+)_date$'),
            substring(props.key from '^hs_v2_date_entered_(.+)$')
        ) as stage_value,
        nullif(btrim(props.value), '') as value
    from latest
    cross join lateral jsonb_each_text(
        case when jsonb_typeof(latest.record -> 'properties') = 'object'
            then latest.record -> 'properties' else '{}'::jsonb end
    ) as props (key, value)
    where props.key like 'hs\_lifecyclestage\_%\_date' or props.key like 'hs\_v2\_date\_entered\_%'
),

final as (
    select
        contact_id,
        property,
        {{ stage_value('stage_value') }} as lifecycle_stage_raw,
        {{ map_lifecycle_stage('stage_value') }} as lifecycle_stage,
        {{ safe_timestamptz('value') }} as entered_at
    from properties
    where stage_value is not null
        and {{ safe_timestamptz('value') }} is not null
)

select * from final
