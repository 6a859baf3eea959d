-- Scores: one row per contact per day from its first known day to the interval end: score = fit score (its
-- fit rule hits) + engagement score (that day's behaviour and derived rule hits), with the rules that fired, their
-- points and the values they saw (as known at the end of that day). Incremental like its rule hits: a daily run
-- recomputes the days from data_interval_start − lookback_days to the interval end: the lookback days only of the
-- contacts whose rule hits or fit rule hits changed (macros/contact_changes.sql).
{{ config(pre_hook=["{{ dense_rows_prepare(upstream='int_contact_rule_hits_daily', inputs=scores_inputs()) }}",
                    "{{ delete_recomputed_days() }}"],
          post_hook="{{ dense_rows_record(upstream='int_contact_rule_hits_daily', inputs=scores_inputs()) }}",
          **daily_table_config()) }}

with

features as (
    {{ recomputed_rows_of(ref('int_contact_features_daily')) }}
),

behaviour_hits as (
    {{ recomputed_rows_of(ref('int_contact_rule_hits_daily')) }}
),

fit_hits as (
    select * from {{ ref('int_contact_fit_rule_hits') }}
),

behaviour_daily as (
    select
        contact_id,
        score_date,
        sum(points) as engagement_score,
        array_agg(rule_id order by rule_order) as rule_ids,
        jsonb_object_agg(rule_id, points) as rule_points,
        jsonb_object_agg(rule_id, value_num) as rule_values,
        coalesce(array_agg(rule_id order by rule_order) filter (where disqualify), array[]::text[])
            as disqualifying_rule_ids
    from behaviour_hits
    group by contact_id, score_date
),

fit as (
    select
        contact_id,
        sum(points) as fit_score,
        array_agg(rule_id order by rule_order) as rule_ids,
        jsonb_object_agg(rule_id, points) as rule_points,
        jsonb_object_agg(rule_id, coalesce(to_jsonb(value_num), to_jsonb(value_text))) as rule_values,
        coalesce(array_agg(rule_id order by rule_order) filter (where disqualify), array[]::text[])
            as disqualifying_rule_ids
    from fit_hits
    group by contact_id
),

final as (
    select
        features.contact_id,
        features.score_date,
        features.lead_date,
        coalesce(fit.fit_score, 0) + coalesce(behaviour_daily.engagement_score, 0) as score,
        coalesce(fit.fit_score, 0) as fit_score,
        coalesce(behaviour_daily.engagement_score, 0) as engagement_score,
        coalesce(fit.rule_ids, array[]::text[]) || coalesce(behaviour_daily.rule_ids, array[]::text[]) as rule_ids,
        coalesce(fit.rule_points, '{}'::jsonb) || coalesce(behaviour_daily.rule_points, '{}'::jsonb) as rule_points,
        coalesce(fit.rule_values, '{}'::jsonb) || coalesce(behaviour_daily.rule_values, '{}'::jsonb) as rule_values,
        coalesce(fit.disqualifying_rule_ids, array[]::text[])
            || coalesce(behaviour_daily.disqualifying_rule_ids, array[]::text[]) as disqualifying_rule_ids,
        features.days_since_last_activity,
        features.last_activity_date
    from features
    left join fit
        on features.contact_id = fit.contact_id
    left join behaviour_daily
        on features.contact_id = behaviour_daily.contact_id
        and features.score_date = behaviour_daily.score_date
)

select * from final
{{ daily_table_order() }}
