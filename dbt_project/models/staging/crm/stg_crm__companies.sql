with

source as (
    select * from {{ source('crm', 'crm_companies') }}
),

latest as (
    {{ latest_version('source') }}
),

final as (
    select
        record_id as company_id,
        {{ prop('record', 'name') }} as company_name,
        lower({{ prop('record', 'domain') }}) as domain,
        upper({{ prop('record', 'industry') }}) as industry,
        {{ safe_numeric(prop('record', 'numberofemployees')) }}::integer as employees,
        {{ safe_numeric(prop('record', 'annualrevenue')) }} as annual_revenue,
        {{ safe_numeric(prop('record', 'monthly_web_visitors')) }} as monthly_web_visitors,
        lower({{ prop('record', 'web_technologies') }}) as web_technologies,
        array_remove(
            string_to_array(lower({{ prop('record', 'web_technologies') }}), ';'), ''
        ) as web_technology_list,
        {{ prop('record', 'country') }} as country,
        {{ prop('record', 'hubspot_owner_id') }} as owner_id,
        coalesce(
            {{ safe_timestamptz(prop('record', 'createdate')) }},
            {{ safe_timestamptz("nullif(record ->> 'createdAt', '')") }}
        ) as created_at,
        coalesce({{ safe_timestamptz(prop('record', 'hs_lastmodifieddate')) }}, updated_at) as updated_at,
        archived as is_archived
    from latest
)

select * from final
