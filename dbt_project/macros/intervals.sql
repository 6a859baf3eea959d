{#- 95% confidence intervals for the rule-lift mart (marts.funnel_rule_lift), in SQL on counts.
    z is the standard normal's 97.5th percentile (a two-sided 95% interval). Every macro gives null where the
    interval is undefined (no trials; no outcome in a group), never a division error. -#}

{% macro z_95() -%}
    1.959963984540054
{%- endmacro %}

{% macro wilson_bound(successes, trials, side) -%}
    {#- The Wilson score interval of a proportion successes / trials; side -1 the lower bound, +1 the upper:
        (p + z²/2n ± z·sqrt(p(1 − p)/n + z²/4n²)) / (1 + z²/n), with p = successes / n. -#}
    (
        (({{ successes }})::double precision / nullif({{ trials }}, 0)
            + {{ z_95() }} ^ 2 / (2 * nullif({{ trials }}, 0))
            + ({{ side }}) * {{ z_95() }} * sqrt(
                ({{ successes }})::double precision / nullif({{ trials }}, 0)
                * (1 - ({{ successes }})::double precision / nullif({{ trials }}, 0)) / nullif({{ trials }}, 0)
                + {{ z_95() }} ^ 2 / (4 * nullif({{ trials }}, 0)::double precision ^ 2)))
        / (1 + {{ z_95() }} ^ 2 / nullif({{ trials }}, 0))
    )
{%- endmacro %}

{% macro katz_ratio_bound(events_a, trials_a, events_b, trials_b, side) -%}
    {#- The log-ratio (Katz) interval of the ratio of two proportions (a/n_a) / (b/n_b); side -1 lower, +1 upper:
        exp(ln(ratio) ± z·sqrt(1/a − 1/n_a + 1/b − 1/n_b)). Null when a or b is 0 (the log is undefined). -#}
    exp(
        ln(nullif({{ events_a }}, 0)::double precision / ({{ trials_a }})
            / (nullif({{ events_b }}, 0)::double precision / ({{ trials_b }})))
        + ({{ side }}) * {{ z_95() }} * sqrt(
            1.0 / nullif({{ events_a }}, 0) - 1.0 / ({{ trials_a }})
            + 1.0 / nullif({{ events_b }}, 0) - 1.0 / ({{ trials_b }}))
    )
{%- endmacro %}
