with

source as (
    select * from {{ source('crm', 'crm_contacts') }}
),

latest as (
    {{ latest_version('source') }}
),

typed as (
    select
        record_id as contact_id,
        record_id as crm_contact_id,
        lower(btrim({{ prop('record', 'email') }})) as email,
        {{ prop('record', 'jobtitle') }} as job_title,
        lower({{ prop('record', 'persona') }}) as persona,
        {{ prop('record', 'associatedcompanyid') }} as company_id,
        {{ prop('record', 'hubspot_owner_id') }} as owner_id,
        {{ stage_value(prop('record', 'lifecyclestage')) }} as lifecycle_stage_raw,
        {{ prop('record', 'hs_lead_status') }} as lead_status,
        {{ prop('record', 'hs_analytics_source') }} as original_source,
        {{ prop('record', 'hs_analytics_source_data_1') }} as original_source_detail,
        coalesce({{ safe_boolean(prop('record', 'hs_email_optout')) }}, false) as is_email_opted_out,
        coalesce({{ safe_boolean(prop('record', 'hs_email_bounce')) }}, false) as is_email_bounced,
        coalesce(
            {{ safe_timestamptz(prop('record', 'createdate')) }},
            {{ safe_timestamptz("nullif(record ->> 'createdAt', '')") }}
        ) as created_at,
        coalesce(
            {{ safe_timestamptz(prop('record', 'lastmodifieddate')) }},
            updated_at
        ) as updated_at,
        archived as is_archived,
        _loaded_at
    from latest
),

final as (
    select
        *,
        {{ map_lifecycle_stage('lifecycle_stage_raw') }} as lifecycle_stage,
        md5(email) as email_hash,
        nullif(split_part(email, '@', 2), '') as email_domain
    from typed
)

select * from final
