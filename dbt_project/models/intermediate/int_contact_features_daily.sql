{{ config(pre_hook=["{{ dense_rows_prepare() }}", "{{ features_changed_contacts() }}",
                    "{{ delete_recomputed_days() }}"],
          post_hook="{{ dense_rows_record() }}", **daily_table_config()) }}
-- The point-in-time behaviour of every contact: one row per contact per day from the first day we know of it
-- (lead creation, or its earliest stitched activity) to the interval end, with each behaviour feature's count
-- of facts KNOWN on that day (0 when none) and the days since its last known activity.
-- Incremental: a daily run recomputes the days from data_interval_start − lookback_days (L) to the interval end
-- for every contact, carrying its last activity from its row of day L − 1; a contact with no row that day (new,
-- or first seen in the CRM only now) gets its whole spine. Rows of days before L stay as they were: facts known
-- before L do not change after the lookback, as in every incremental model here. It writes the new days of every
-- contact and the lookback days of the contacts whose facts there changed (macros/contact_changes.sql).
with

contacts as (
    select * from {{ ref('int_contacts_enriched') }}
),

facts as not materialized (
    -- read twice on a daily run: inlined, so each read is its index range
    select * from {{ ref('int_contact_engagement_facts') }}
),

{% if recomputes_range() %}
carried as (
    -- each contact's row of the day before the recomputed range: where its spine started, its last activity
    select contact_id, spine_start_date, last_activity_date
    from {{ this }}
    where score_date = {{ recompute_start_date() }} - 1
),
{% endif %}

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
    {% if recomputes_range() %}
    -- a carried contact needs only the recomputed days, a new one its whole history: the known_date index range,
    -- and one (contact_id, event_date) index range per new contact, not every fact
    from (
        select * from facts
        where facts.known_date >= {{ recompute_start_date() }}
        union all
        select older.* from (
            select contacts.contact_id from contacts
            where not exists (select 1 from carried where carried.contact_id = contacts.contact_id)
        ) as new_contacts
        cross join lateral (
            select * from facts
            where facts.contact_id = new_contacts.contact_id
                and facts.known_date < {{ recompute_start_date() }}
            -- offset 0 keeps it a per-contact index range (not pulled up into a join); no order needed
            offset 0  -- noqa: AM09
        ) as older
    ) as facts
    {% else %}
    from facts
    {% endif %}
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
        {% if recomputes_range() %}
        coalesce(carried.spine_start_date,
            least({{ utc_date('contacts.lead_at') }}, first_known.first_known_date)) as spine_start_date,
        -- the first day recomputed: L for a contact carried over, else its whole spine
        case when carried.contact_id is not null then {{ recompute_start_date() }} end as recompute_from_date,
        carried.last_activity_date as carried_last_activity_date
        {% else %}
        least({{ utc_date('contacts.lead_at') }}, first_known.first_known_date) as spine_start_date,
        cast(null as date) as recompute_from_date,
        cast(null as date) as carried_last_activity_date
        {% endif %}
    from contacts
    left join first_known
        on contacts.contact_id = first_known.contact_id
    {% if recomputes_range() %}
    left join carried
        on contacts.contact_id = carried.contact_id
    {% endif %}
),

spine as (
    select
        bounds.contact_id,
        bounds.lead_date,
        bounds.spine_start_date,
        bounds.carried_last_activity_date,
        days.score_date::date as score_date
    from bounds
    cross join run_interval
    cross join lateral generate_series(
        coalesce(bounds.recompute_from_date, bounds.spine_start_date), run_interval.interval_end_date, interval '1 day'
    ) as days (score_date)
    where bounds.spine_start_date is not null
),

joined as (
    select
        spine.contact_id,
        spine.score_date,
        spine.lead_date,
        spine.spine_start_date,
        spine.carried_last_activity_date,
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
        coalesce(
            max(activity_date) over (partition by contact_id order by score_date rows unbounded preceding),
            carried_last_activity_date
        ) as last_activity_date
    from joined
)

select
    contact_id,
    score_date,
    lead_date,
    spine_start_date,
    {% for feature in behaviour_features() %}
    {{ feature }},
    {% endfor %}
    activity_date,
    last_activity_date,
    -- days since the last known activity (since the first known day when there was none yet)
    score_date - coalesce(last_activity_date, spine_start_date) as days_since_last_activity
from final
where true {{ recomputed_rows('final') }}
{{ daily_table_order() }}
