-- The point-in-time behaviour of every contact: one row per contact per day from the first day we know of it
-- (lead creation, or its earliest stitched activity) to the interval end, with each behaviour feature's count
-- of facts KNOWN on that day (0 when none) and the days since its last known activity.
with

contacts as (
    select * from {{ ref('int_contacts_enriched') }}
),

facts as (
    select * from {{ ref('int_contact_engagement_facts') }}
),

run_interval as (
    select * from {{ ref('int_run_interval') }}
),

facts_daily as (
    select
        facts.contact_id,
        facts.known_date,
        {% for feature in behaviour_features() %}
        count(*) filter (where facts.feature = '{{ feature }}') as {{ feature }},
        {% endfor %}
        count(*) as facts
    from facts
    cross join run_interval
    where facts.known_date <= run_interval.interval_end_date
    group by facts.contact_id, facts.known_date
),

first_known as (
    select contact_id, min(known_date) as first_known_date
    from facts_daily
    group by contact_id
),

bounds as (
    select
        contacts.contact_id,
        {{ utc_date('contacts.lead_at') }} as lead_date,
        least({{ utc_date('contacts.lead_at') }}, first_known.first_known_date) as spine_start_date
    from contacts
    left join first_known
        on contacts.contact_id = first_known.contact_id
),

spine as (
    select
        bounds.contact_id,
        bounds.lead_date,
        bounds.spine_start_date,
        days.score_date::date as score_date
    from bounds
    cross join run_interval
    cross join lateral generate_series(
        bounds.spine_start_date, run_interval.interval_end_date, interval '1 day'
    ) as days (score_date)
    where bounds.spine_start_date is not null
),

joined as (
    select
        spine.contact_id,
        spine.score_date,
        spine.lead_date,
        spine.spine_start_date,
        {% for feature in behaviour_features() %}
        coalesce(facts_daily.{{ feature }}, 0) as {{ feature }},
        {% endfor %}
        case when facts_daily.facts > 0 then spine.score_date end as activity_date
    from spine
    left join facts_daily
        on spine.contact_id = facts_daily.contact_id
        and spine.score_date = facts_daily.known_date
),

final as (
    select
        joined.*,
        max(activity_date) over (
            partition by contact_id order by score_date rows unbounded preceding
        ) as last_activity_date
    from joined
)

select
    *,
    -- days since the last known activity (since the first known day when there was none yet)
    score_date - coalesce(last_activity_date, spine_start_date) as days_since_last_activity
from final
