{#- Shared by the CRM staging models. -#}

{% macro latest_version(relation) -%}
    {#- The latest version of each record in an append-only raw.crm_* table: re-loading a day, or seeing a
        record twice while paging, adds no duplicates downstream. -#}
    select distinct on (record_id) *
    from {{ relation }}
    order by record_id, updated_at desc nulls last, _loaded_at desc
{%- endmacro %}

{% macro associated_ids(record, object_type) -%}
    {#- The ids a HubSpot v3 object is associated with (`associations.<type>.results[].id`), as text[]. -#}
    array(
        select distinct assoc ->> 'id'
        from jsonb_array_elements(
            case when jsonb_typeof({{ record }} -> 'associations' -> '{{ object_type }}' -> 'results') = 'array'
                then {{ record }} -> 'associations' -> '{{ object_type }}' -> 'results' else '[]'::jsonb end
        ) as assoc
        where assoc ->> 'id' is not null
    )
{%- endmacro %}
