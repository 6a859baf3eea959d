{#- Typing helpers for the raw jsonb (every HubSpot property value is a string or null). -#}

{% macro prop(record, name) -%}
    nullif({{ record }} -> 'properties' ->> '{{ name }}', '')
{%- endmacro %}

{% macro safe_numeric(expr) -%}
    (case when btrim({{ expr }}) ~ '^[-+]?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?$' then btrim({{ expr }})::numeric end)
{%- endmacro %}

{% macro safe_timestamptz(expr) -%}
    {#- ISO-8601 text, or epoch milliseconds (HubSpot's older date format). Text without an offset is UTC (as the CSV
        loader reads it), whatever the session's time zone. -#}
    (case
        when {{ expr }} ~ '^[0-9]{12,14}$' then to_timestamp(({{ expr }})::bigint / 1000.0)
        when {{ expr }} ~ '^[0-9]{4}-[0-9]{2}-[0-9]{2}([T ][0-9:.]+)?$'
            then ({{ expr }})::timestamp at time zone 'UTC'
        when {{ expr }} ~ '^[0-9]{4}-[0-9]{2}-[0-9]{2}' then ({{ expr }})::timestamptz
    end)
{%- endmacro %}

{% macro safe_boolean(expr) -%}
    (case lower(btrim({{ expr }})) when 'true' then true when 'false' then false end)
{%- endmacro %}

{% macro utc_date(ts) -%}
    (({{ ts }}) at time zone 'UTC')::date
{%- endmacro %}

{% macro utc_midnight(d) -%}
    (({{ d }})::timestamp at time zone 'UTC')
{%- endmacro %}

{% macro stage_value(expr) -%}
    {#- A HubSpot enumeration value as its internal name: a CSV export's label ("Marketing Qualified Lead",
        "Closed Won") and the API's value (marketingqualifiedlead, closedwon) both give the lower-case value with
        spaces and punctuation dropped. -#}
    nullif(lower(regexp_replace({{ expr }}, '[^A-Za-z0-9_]', '', 'g')), '')
{%- endmacro %}

{% macro map_lifecycle_stage(expr) -%}
    {#- HubSpot lifecyclestage (value or export label) -> handoff stage; unknown values stay null -#}
    (case {{ stage_value(expr) }}
        when 'subscriber' then 'lead'
        when 'lead' then 'lead'
        when 'marketingqualifiedlead' then 'mql'
        when 'salesqualifiedlead' then 'sql'
        when 'opportunity' then 'opportunity'
        when 'customer' then 'customer'
        when 'evangelist' then 'customer'
    end)
{%- endmacro %}
