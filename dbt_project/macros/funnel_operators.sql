{#- Evaluate a funnel rule's operator (a column holding '>=', '>', '=', '!=', '<=', '<') on numbers.
    The operators are the definition's vocabulary; the thresholds come from the seed. -#}
{% macro compare_numeric(lhs, operator, rhs) -%}
    (case {{ operator }}
        when '>=' then {{ lhs }} >= {{ rhs }}
        when '>' then {{ lhs }} > {{ rhs }}
        when '=' then {{ lhs }} = {{ rhs }}
        when '!=' then {{ lhs }} <> {{ rhs }}
        when '<=' then {{ lhs }} <= {{ rhs }}
        when '<' then {{ lhs }} < {{ rhs }}
    end)
{%- endmacro %}
