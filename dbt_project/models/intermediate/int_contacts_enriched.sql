-- Every (non-archived) contact with its company and the fit attributes the definition scores: company size
-- band (seed company_size_bands), email domain type (the definition's domain lists), CMS list, persona ...
with

contacts as (
    select * from {{ ref('stg_crm__contacts') }}
    where not is_archived
),

companies as (
    select * from {{ ref('stg_crm__companies') }}
),

size_bands as (
    select * from {{ ref('company_size_bands') }}
),

lists as (
    select * from {{ ref('funnel_lists') }}
),

final as (
    select
        contacts.contact_id,
        contacts.crm_contact_id,
        contacts.email_hash,
        contacts.email_domain,
        case
            when contacts.email_domain is null then null
            when exists (
                select 1 from lists
                where lists.list_name = 'competitor_domains' and lists.value = contacts.email_domain
            ) then 'competitor'
            when exists (
                select 1 from lists
                where lists.list_name = 'personal_email_domains' and lists.value = contacts.email_domain
            ) then 'personal'
            else 'business'
        end as email_domain_type,
        contacts.company_id,
        companies.company_name,
        contacts.persona,
        contacts.job_title,
        companies.industry,
        companies.employees,
        size_bands.band as company_size_band,
        companies.annual_revenue,
        companies.monthly_web_visitors,
        companies.web_technologies as cms,  -- ';'-separated, lower case
        companies.country,
        contacts.owner_id,
        contacts.original_source,
        contacts.original_source_detail,
        contacts.lifecycle_stage,
        contacts.lead_status,
        contacts.is_email_opted_out,
        contacts.is_email_bounced,
        contacts.created_at as lead_at
    from contacts
    left join companies
        on contacts.company_id = companies.company_id
    left join size_bands
        on companies.employees >= size_bands.min_employees
        and (size_bands.max_employees is null or companies.employees <= size_bands.max_employees)
)

select * from final
