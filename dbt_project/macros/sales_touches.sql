{% macro first_owner_activity(subjects, since) -%}
    {#- The first CRM call or meeting with each contact of `subjects` (a CTE with contact_id and owner_id) at or after
    its `since` column and before the run's data interval end, by the contact's owner (by any rep when the contact
    has no owner): contact_id, activity_at, activity_type. Needs `activities` (int_contact_crm_activities) and
    `run_interval` in scope. The SQL follow-up SLA and the MQL aging both count a sales touch this way. -#}
    select distinct on ({{ subjects }}.contact_id)
        {{ subjects }}.contact_id,
        activities.activity_at,
        activities.activity_type
    from {{ subjects }}
    cross join run_interval
    inner join activities
        on {{ subjects }}.contact_id = activities.contact_id
        and activities.activity_at >= {{ subjects }}.{{ since }}
        and activities.activity_at < run_interval.interval_end_at
        and ({{ subjects }}.owner_id is null or activities.owner_id = {{ subjects }}.owner_id)
    order by {{ subjects }}.contact_id, activities.activity_at
{%- endmacro %}
