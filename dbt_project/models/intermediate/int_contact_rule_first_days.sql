{{ config(
    materialized='incremental',
    incremental_strategy='append',
    unlogged=false,
    on_schema_change='fail',
    indexes=[{'columns': ['contact_id', 'rule_id'], 'unique': true}, {'columns': ['first_score_date']}],
    pre_hook=["{{ jit_off_for_daily_runs() }}", "{{ fix_recompute_start('first_score_date') }}",
              "{% if recomputes_range() %}delete from {{ this }} where first_score_date >= {{ recompute_start_date() }}"
              ~ "{% elif is_incremental() %}delete from {{ this }}{% endif %}"],
) }}
-- Per contact and behaviour, negative or derived rule: the first day the rule scored for the contact (its first row
-- in int_contact_rule_hits_daily). funnel_rule_lift asks "did the rule fire on the MQL day or before" of this
-- table (one row per contact and rule) instead of the rule hits' 37 million rows at tier M.
-- Incremental: the rule hits before a run's recomputed range do not change (as in every daily table), so a first
-- day before that range stands; the pre-hook deletes the others, and they are looked for again among the rule hits
-- from the range's first day on (by the rule hits' day index). The range starts from the latest first day held
-- (macros/incremental.sql), never later than the rule hits' own, so a skipped run widens it. The index on
-- first_score_date serves that latest day, the delete and a daily run's data tests (the days it wrote): a
-- daily run reads the rows of its range, not one per contact and rule.
with

rule_hits as (
    select contact_id, rule_id, score_date
    from {{ ref('int_contact_rule_hits_daily') }}
    {%- if recomputes_range() %}
    where score_date >= {{ recompute_start_date() }}
    {%- endif %}
),

{% if recomputes_range() %}
held as (
    -- after the pre-hook's delete: the first days before the range, which stand
    select contact_id, rule_id from {{ this }}
),
{% endif %}

final as (
    select
        rule_hits.contact_id,
        rule_hits.rule_id,
        min(rule_hits.score_date) as first_score_date
    from rule_hits
    {%- if recomputes_range() %}
    where not exists (
        select 1 from held where held.contact_id = rule_hits.contact_id and held.rule_id = rule_hits.rule_id
    )
    {%- endif %}
    group by rule_hits.contact_id, rule_hits.rule_id
)

select * from final
