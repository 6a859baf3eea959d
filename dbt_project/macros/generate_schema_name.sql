{#- Schemas are the warehouse's layers (staging, intermediate, marts) exactly, whatever the target schema:
    BI and the roles of docs/architecture.md rely on those names. -#}
{% macro generate_schema_name(custom_schema_name, node) -%}
    {%- if custom_schema_name is none -%}{{ target.schema }}{%- else -%}{{ custom_schema_name | trim }}{%- endif -%}
{%- endmacro %}
