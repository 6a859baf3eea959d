"""The funnel definition's vocabulary: the names config/funnel.yml may use (kept in step with
dbt_project/macros/funnel_vocabulary.sql). Names only; which features score, and how, is the definition's."""

from __future__ import annotations

BEHAVIOUR_FEATURES: tuple[str, ...] = (
    "sessions", "pageviews", "repeat_visit_days", "form_submissions", "downloads_awareness",
    "downloads_consideration", "downloads_decision", "pricing_page_views", "comparison_page_views",
    "careers_page_views", "email_opens", "email_clicks", "social_interactions", "meetings", "demo_requests",
    "pricing_requests", "audit_requests", "meetings_booked", "job_applications", "unsubscribes", "email_bounces",
)
# fit attribute -> value type
FIT_ATTRIBUTES: dict[str, str] = {
    "company_size_band": "text", "industry": "text", "annual_revenue": "number", "monthly_web_visitors": "number",
    "cms": "text", "persona": "text", "email_domain_type": "text", "country": "text",
}
DERIVED_FEATURES: dict[str, str] = {"days_since_last_activity": "number"}
# event-map targets: every behaviour feature, plus `downloads` (split by the asset's buying stage)
EVENT_TARGETS = frozenset(BEHAVIOUR_FEATURES) | {"downloads"}

KINDS = ("count", "threshold", "fit", "negative")
SEGMENTS = ("all", "original_source", "first_touch_channel", "persona", "industry", "company_size_band")
COHORT_GRAINS = ("month", "week")
# evidence: which evidence sets each stage's first time (docs/funnel.md "Evidence"). handoff has rules only for
# mql and sql; lead, opportunity and customer come from the CRM (records, lifecycle history, deals) alone.
EVIDENCE_CHOICES = ("rules_and_crm", "rules", "crm")
EVIDENCE_STAGES = ("lead", "mql", "sql", "opportunity", "customer")
RULE_STAGES = ("mql", "sql")
