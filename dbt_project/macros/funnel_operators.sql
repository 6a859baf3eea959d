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

{#- Whether one value of a fit attribute meets the POSITIVE form of a rule's operator (!= -> =, not_in -> in):
    `listed` is whether the value is in the rule's list (funnel_lists rule.<rule_id>); text compares to the
    rule's value_text, numbers to its value_num. Null when the value and the rule's value are of different types.
    A multi-valued attribute (cms) meets it when any value does: bool_or over the values. -#}
{% macro fit_value_meets(operator, value_text, value_num, rule_value_text, rule_value_num, listed) -%}
    (case
        when {{ operator }} in ('in', 'not_in') then {{ listed }}
        when {{ operator }} in ('=', '!=') and {{ rule_value_text }} is not null
            then {{ value_text }} = {{ rule_value_text }}
        when {{ operator }} in ('=', '!=') then {{ value_num }} = {{ rule_value_num }}
        else {{ compare_numeric(value_num, operator, rule_value_num) }}
    end)
{%- endmacro %}

{#- Whether a fit rule holds, from `any_value_meets` (the bool_or of fit_value_meets over the attribute's values):
    the negated operators (!=, not_in) hold when no value meets the positive form. Null (no comparable value)
    never holds. An attribute with no value has no row at all, so no rule on it holds. -#}
{% macro fit_rule_holds(operator, any_value_meets) -%}
    (case when {{ operator }} in ('!=', 'not_in') then not {{ any_value_meets }} else {{ any_value_meets }} end)
{%- endmacro %}
