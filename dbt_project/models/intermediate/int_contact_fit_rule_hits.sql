-- Fit rule hits: one row per contact per fit-attribute rule (kind fit, or negative on an attribute) that the
-- contact's current attributes meet, with the value seen. `in`/`not_in` lists come from funnel_lists
-- (rule.<rule_id>); a multi-valued attribute (cms) meets `in` when any value is listed, `not_in` when none is.
with

contacts as (
    select * from {{ ref('int_contacts_enriched') }}
),

rules as (
    select * from {{ ref('funnel_rules') }}
),

lists as (
    select * from {{ ref('funnel_lists') }}
),

fit_values as (
    -- the contact's fit attributes, long: one row per attribute value (cms may have several)
    select contacts.contact_id, attrs.feature, attrs.value_text, attrs.value_num
    from contacts
    cross join lateral (
        values
            ('company_size_band', contacts.company_size_band, null::numeric),
            ('industry', contacts.industry, null::numeric),
            ('annual_revenue', null, contacts.annual_revenue),
            ('monthly_web_visitors', null, contacts.monthly_web_visitors),
            ('persona', contacts.persona, null::numeric),
            ('email_domain_type', contacts.email_domain_type, null::numeric),
            ('country', contacts.country, null::numeric)
    ) as attrs (feature, value_text, value_num)
    where attrs.value_text is not null or attrs.value_num is not null
    union all
    select contacts.contact_id, 'cms' as feature, cms.value_text, null::numeric as value_num
    from contacts
    cross join lateral unnest(string_to_array(contacts.cms, ';')) as cms (value_text)
    where cms.value_text <> ''
),

matches as (
    select
        fit_values.contact_id,
        rules.rule_id,
        rules.operator,
        string_agg(coalesce(fit_values.value_text, fit_values.value_num::text), ';'
            order by coalesce(fit_values.value_text, fit_values.value_num::text)) as value_text,
        max(fit_values.value_num) as value_num,
        -- the positive form of the operator (!= -> =, not_in -> in) met by any of the values
        bool_or({{ fit_value_meets('rules.operator', 'fit_values.value_text', 'fit_values.value_num',
                                   'rules.value_text', 'rules.value_num', 'list_values.value is not null') }})
            as is_matched
    from fit_values
    inner join rules
        on rules.feature_class = 'fit'
        and fit_values.feature = rules.feature
    left join lists as list_values
        on list_values.list_name = 'rule.' || rules.rule_id
        and fit_values.value_text = list_values.value
    group by fit_values.contact_id, rules.rule_id, rules.operator
),

final as (
    select
        matches.contact_id,
        matches.rule_id,
        rules.rule_order,
        rules.kind,
        rules.feature,
        rules.feature_class,
        rules.disqualify,
        matches.value_num,
        matches.value_text,
        rules.points
    from matches
    inner join rules
        on matches.rule_id = rules.rule_id
    where {{ fit_rule_holds('matches.operator', 'matches.is_matched') }}
)

select * from final
