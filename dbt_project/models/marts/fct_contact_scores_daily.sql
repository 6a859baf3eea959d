{{ config(
    materialized='incremental',
    incremental_strategy='delete+insert',
    unique_key=['contact_id', 'score_date'],
    on_schema_change='fail',
    indexes=[{'columns': ['contact_id', 'score_date'], 'unique': true}, {'columns': ['score_date']}],
) }}

with

scores as (
    select * from {{ ref('int_contact_scores_daily') }}
),

settings as (
    select * from {{ ref('int_funnel_settings') }}
),

final as (
    select
        scores.contact_id,
        scores.score_date,
        scores.score,
        scores.fit_score,
        scores.engagement_score,
        scores.score >= settings.mql_score_threshold
            and scores.fit_score >= settings.mql_min_fit_score as meets_mql_rule,
        scores.rule_ids,
        scores.rule_points,
        scores.rule_values,
        scores.days_since_last_activity,
        scores.last_activity_date,
        settings.definition_version
    from scores
    cross join settings
    where scores.score_date >= scores.lead_date
        {{ incremental_lookback_filter('scores.score_date') }}
)

select * from final
