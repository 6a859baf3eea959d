{#- The funnel definition's vocabulary (kept in step with plugins/handoff/funnel/vocabulary.py BEHAVIOUR_FEATURES).
    These are names, not rules: which features score, with what points and windows, comes from the seeds. -#}
{% macro behaviour_features() -%}
    {{ return([
        'sessions', 'pageviews', 'repeat_visit_days', 'form_submissions', 'downloads_awareness',
        'downloads_consideration', 'downloads_decision', 'pricing_page_views', 'comparison_page_views',
        'careers_page_views', 'email_opens', 'email_clicks', 'social_interactions', 'meetings', 'demo_requests',
        'pricing_requests', 'audit_requests', 'meetings_booked', 'job_applications', 'unsubscribes', 'email_bounces',
    ]) }}
{%- endmacro %}
