{#- Schemas are the warehouse's layers (staging, intermediate, marts) exactly, whatever the target schema:
    BI and the roles of docs/architecture.md rely on those names. A backtest (`handoff funnel backtest`,
    docs/funnel.md "Changing the definition safely") passes var('backtest') = {schema, nodes}: the nodes it
    rebuilds for a candidate definition go to that schema instead, and read everything else from production. -#}
{% macro generate_schema_name(custom_schema_name, node) -%}
    {%- set backtest = var('backtest', none) -%}
    {%- if backtest and node.name in backtest['nodes'] -%}{{ backtest['schema'] }}
    {%- elif custom_schema_name is none -%}{{ target.schema }}
    {%- else -%}{{ custom_schema_name | trim }}{%- endif -%}
{%- endmacro %}

{#- The production relation of a model a backtest may have routed: `relation` (a ref) in the layer's schema. -#}
{% macro production(relation, layer) -%}
    {{ return(relation.incorporate(path={'schema': layer})) }}
{%- endmacro %}
