{{ config(pre_hook=["set local work_mem = '{{ var('heavy_model_work_mem') }}'",
                    "{{ dense_rows_prepare(upstream='int_contact_features_daily', inputs=rule_hits_inputs()) }}",
                    "{{ delete_recomputed_days() }}"],
          post_hook="{{ dense_rows_record(upstream='int_contact_features_daily', inputs=rule_hits_inputs()) }}",
          **daily_table_config(unique=false)) }}
-- Behaviour rule hits: one row per contact per day per behaviour or derived rule of the funnel definition that
-- scores non-zero points that day, with the value it saw (fit rules: int_contact_fit_rule_hits — fit attributes
-- are the contact's current ones, so they do not change by day). Rules are evaluated generically from the seed
-- funnel_rules:
--   count     points × occurrences in the last window_days (each fading with the half-life when `decays`),
--             capped at `cap`;
--   threshold / negative on a behaviour feature: points once the window's total meets `operator value`;
--   derived (days_since_last_activity): points when the day's value meets `operator value`.
-- Windowed totals come from running sums over the dense contact × day spine: total(d, W) = cum(d) − cum(d − W),
-- and the faded total 0.5^((d − a)/h) · (dcum(d) − dcum(d − W)) with dcum the running sum of
-- count · 2^((e − a)/h) (a = the contact's first day; exact, and no per-rule × per-day × per-event join).
-- Days before a feature's first occurrence are skipped: `handoff funnel check` rejects behaviour conditions
-- that would hold with no activity at all.
-- Incremental: a daily run recomputes only the days from data_interval_start − lookback_days to the interval end
-- (late events correct them), each window total summed straight from the sparse per-day facts — a handful of
-- days × each contact's active days, the same numbers the running sums give a full refresh. The lookback days only
-- of the contacts whose features changed there (or every contact after a change to the rules; macros/contact_changes.sql).
with

features as (
    {{ recomputed_rows_of(ref('int_contact_features_daily')) }}
),

facts as (
    select * from {{ ref('int_contact_engagement_facts') }}
),

rules as (
    select * from {{ ref('funnel_rules') }}
),

settings as (
    select * from {{ ref('int_funnel_settings') }}
),

needed as (
    -- the (feature, window) pairs the behaviour rules use
    select distinct feature, window_days
    from rules
    where feature_class = 'behaviour'
),

{% if recomputes_range() %}

reach as (
    -- how far back each feature's longest window reaches from the first recomputed day
    select feature, max(window_days) as window_days
    from needed
    group by feature
),

known_daily as (
    -- the rule features' occurrences per contact per known day (active days only) that some recomputed day's
    -- window holds: an index range on facts (feature, known_date) per feature, not every fact
    select facts.contact_id, facts.feature, facts.known_date, count(*) as n
    from facts
    inner join reach
        on facts.feature = reach.feature
        and facts.known_date > {{ recompute_start_date() }} - reach.window_days
    where facts.known_date <= {{ interval_end_date() }}
    group by facts.contact_id, facts.feature, facts.known_date
),

windowed as (
    -- total(d, W) = occurrences known in (d − W, d]; faded(d, W) = the same, each × 0.5^((d − e)/h)
    select
        features.contact_id,
        features.score_date,
        known_daily.feature,
        needed.window_days,
        sum(known_daily.n)::double precision as window_count,
        sum(known_daily.n * power(0.5::double precision,
            (features.score_date - known_daily.known_date) / settings.half_life_days)) as window_faded
    from features
    inner join known_daily
        on features.contact_id = known_daily.contact_id
        and known_daily.known_date <= features.score_date
    inner join needed
        on known_daily.feature = needed.feature
        and known_daily.known_date > features.score_date - needed.window_days
    cross join settings
    group by features.contact_id, features.score_date, known_daily.feature, needed.window_days
),

{% else %}

first_seen as (
    -- each contact's first day with each behaviour feature some rule uses: before it every window is empty
    select facts.contact_id, facts.feature, min(facts.known_date) as first_known_date
    from facts
    where facts.feature in (select needed.feature from needed)
    group by facts.contact_id, facts.feature
),

long_daily as (
    -- one row per contact × (feature, window) pair × day from the feature's first occurrence on (dense days)
    select
        features.contact_id,
        features.score_date,
        features.spine_start_date,
        first_seen.feature,
        needed.window_days,
        (case first_seen.feature
            {% for feature in behaviour_features() %}
            when '{{ feature }}' then features.{{ feature }}
            {% endfor %}
        end) as n
    from first_seen
    inner join needed
        on first_seen.feature = needed.feature
    inner join features
        on first_seen.contact_id = features.contact_id
        and features.score_date >= first_seen.first_known_date
),

running as (
    select
        long_daily.contact_id,
        long_daily.feature,
        long_daily.window_days,
        long_daily.score_date,
        long_daily.spine_start_date,
        settings.half_life_days,
        sum(long_daily.n) over by_day as cum,
        sum(long_daily.n * power(2::double precision,
            (long_daily.score_date - long_daily.spine_start_date) / settings.half_life_days)) over by_day as dcum
    from long_daily
    cross join settings
    window by_day as (
        partition by long_daily.contact_id, long_daily.feature, long_daily.window_days
        order by long_daily.score_date
        rows unbounded preceding
    )
),

windowed as (
    -- total(d, W) = cum(d) - cum(d - W); faded(d, W) = 0.5^((d - a)/h) * (dcum(d) - dcum(d - W)).
    -- The days are dense, so the row W rows back is day d - W (none yet: the window holds everything so far).
    select
        contact_id,
        score_date,
        feature,
        window_days,
        (cum - coalesce(lag(cum, window_days) over by_day, 0))::double precision as window_count,
        power(0.5::double precision, (score_date - spine_start_date) / half_life_days)
            * (dcum - coalesce(lag(dcum, window_days) over by_day, 0)) as window_faded
    from running
    window by_day as (partition by contact_id, feature, window_days order by score_date)
),

{% endif %}

behaviour_hits as (
    select
        windowed.contact_id,
        windowed.score_date,
        rules.rule_id,
        case when rules.decays and rules.kind = 'count' then windowed.window_faded else windowed.window_count end
            as value_num,
        cast(null as text) as value_text,
        case
            when rules.kind = 'count' and rules.decays
                then least(rules.points * windowed.window_faded, coalesce(rules.cap, rules.points * windowed.window_faded))
            when rules.kind = 'count'
                then least(rules.points * windowed.window_count, coalesce(rules.cap, rules.points * windowed.window_count))
            when {{ compare_numeric('windowed.window_count', 'rules.operator', 'rules.value_num') }} then rules.points
            else 0
        end as points
    from windowed
    inner join rules
        on rules.feature_class = 'behaviour'
        and rules.feature = windowed.feature
        and rules.window_days = windowed.window_days
),

derived_hits as (
    select
        features.contact_id,
        features.score_date,
        rules.rule_id,
        features.days_since_last_activity::double precision as value_num,
        cast(null as text) as value_text,
        case
            when {{ compare_numeric('features.days_since_last_activity', 'rules.operator', 'rules.value_num') }}
                then rules.points
            else 0
        end as points
    from features
    inner join rules
        on rules.feature_class = 'derived'
        and rules.feature = 'days_since_last_activity'
),

all_hits as (
    select contact_id, score_date, rule_id, value_num, value_text, points::double precision as points
    from behaviour_hits
    union all
    select contact_id, score_date, rule_id, value_num, value_text, points::double precision
    from derived_hits
),

final as (
    select
        all_hits.contact_id,
        all_hits.score_date,
        all_hits.rule_id,
        rules.rule_order,
        rules.kind,
        rules.feature,
        rules.feature_class,
        rules.disqualify,
        trim_scale(round(all_hits.value_num::numeric, 4)) as value_num,
        all_hits.value_text,
        trim_scale(round(all_hits.points::numeric, 4)) as points
    from all_hits
    inner join rules
        on all_hits.rule_id = rules.rule_id
    where round(all_hits.points::numeric, 4) <> 0
)

select * from final
{{ daily_table_order() }}
