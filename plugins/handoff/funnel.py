"""The funnel definition (config/funnel.yml): the marketing↔sales SLA as code.

``load(path)`` reads and validates the YAML into a ``Definition`` (errors name the rule id or key, the line and
the problem, and raise ``FunnelDefinitionError``); ``compile(definition, seeds_dir)`` writes the dbt seeds that
carry the rules as data (``funnel_rules.csv``, ``funnel_settings.csv``, ``funnel_event_map.csv``,
``funnel_lists.csv``, ``company_size_bands.csv``). The SQL evaluates rules generically by joining to those seeds,
so changing the YAML and re-compiling changes the scores with no SQL edit.

CLI: ``handoff funnel check|compile [--definition PATH] [--seeds-dir DIR]`` (``main(argv)``).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import yaml

from handoff import settings

# ---------------------------------------------------------------------------------------------------------------
# Vocabulary (kept in step with dbt_project/macros/funnel_vocabulary.sql)

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

NUMERIC_OPERATORS = (">=", ">", "=", "!=", "<=", "<")
LIST_OPERATORS = ("in", "not_in")
OPERATORS = NUMERIC_OPERATORS + LIST_OPERATORS
TEXT_OPERATORS = ("=", "!=", "in", "not_in")
KINDS = ("count", "threshold", "fit", "negative")
SEGMENTS = ("all", "original_source", "persona", "industry", "company_size_band")
COHORT_GRAINS = ("month", "week")
# evidence: which evidence sets each stage's first time (docs/funnel.md "Evidence"). handoff has rules only for
# mql and sql; lead, opportunity and customer come from the CRM (records, lifecycle history, deals) alone.
EVIDENCE_CHOICES = ("rules_and_crm", "rules", "crm")
EVIDENCE_STAGES = ("lead", "mql", "sql", "opportunity", "customer")
RULE_STAGES = ("mql", "sql")

SEED_FILES = ("funnel_rules.csv", "funnel_settings.csv", "funnel_event_map.csv", "funnel_lists.csv",
              "company_size_bands.csv")


class FunnelDefinitionError(ValueError):
    """The funnel definition is invalid; ``problems`` lists every problem found (one sentence each)."""

    def __init__(self, path: str | Path, problems: Sequence[str]):
        self.path = str(path)
        self.problems = list(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"{self.path}: invalid funnel definition ({len(self.problems)} problem"
                         f"{'s' if len(self.problems) != 1 else ''}):\n{lines}")


# ---------------------------------------------------------------------------------------------------------------
# The validated definition


@dataclass(frozen=True)
class Rule:
    rule_id: str
    kind: str
    feature: str
    feature_class: str  # behaviour | fit | derived
    points: float
    operator: str | None = None
    value: Any = None
    window_days: int | None = None
    cap: float | None = None
    decays: bool = False
    disqualify: bool = False
    line: int | None = None


@dataclass(frozen=True)
class SizeBand:
    min_employees: int
    band: str


@dataclass(frozen=True)
class Definition:
    version: str
    name: str
    half_life_days: float
    rules: tuple[Rule, ...]
    mql_score_threshold: float
    mql_min_fit_score: float
    sql_signals: tuple[str, ...]
    sql_crm_lifecycle_stages: tuple[str, ...]
    disqualify_crm_lead_statuses: tuple[str, ...]
    recycle_crm_lead_statuses: tuple[str, ...]
    events: dict[str, str]
    lists: dict[str, tuple[str, ...]]
    company_size_bands: tuple[SizeBand, ...]
    cohort_grain: str
    max_periods_since_mql: int
    lags_to_report: tuple[int, ...]
    sales_cycle_lag_periods: int
    segments: tuple[str, ...]
    healthy_min_rate: float
    healthy_max_rate: float
    mql_goal_per_period: int
    sql_follow_up_hours: float
    # stage -> rules_and_crm | rules | crm (mql and sql only; the other stages are crm)
    evidence: dict[str, str] = field(default_factory=lambda: {"mql": "rules_and_crm", "sql": "rules_and_crm"})
    # rules evidence counts from this UTC day on (None: always); before it only the CRM's record
    evidence_rules_from: date | None = None
    source: str = field(default="", compare=False)


# ---------------------------------------------------------------------------------------------------------------
# YAML with line numbers


class _LineDict(dict):
    line: int | None = None


class _LineLoader(yaml.SafeLoader):
    pass


def _construct_mapping(loader: _LineLoader, node: yaml.MappingNode) -> _LineDict:
    loader.flatten_mapping(node)
    out = _LineDict()
    out.line = node.start_mark.line + 1
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if key in out:
            raise FunnelDefinitionError(loader.name, [f"line {key_node.start_mark.line + 1}: key {key!r} appears "
                                                      "twice in the same mapping"])
        out[key] = loader.construct_object(value_node, deep=True)
    return out


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _at(obj: Any) -> str:
    line = getattr(obj, "line", None)
    return f"line {line}: " if line else ""


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _holds(op: str, lhs: float, rhs: float) -> bool:
    return {">=": lhs >= rhs, ">": lhs > rhs, "=": lhs == rhs, "!=": lhs != rhs, "<=": lhs <= rhs,
            "<": lhs < rhs}[op]


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


# ---------------------------------------------------------------------------------------------------------------
# load + validate


def load(path: str | Path | None = None) -> Definition:
    """Read and validate a funnel definition; raise ``FunnelDefinitionError`` listing every problem."""
    path = Path(path or settings.FUNNEL_DEFINITION)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise FunnelDefinitionError(path, [f"cannot read the file: {exc.strerror or exc}"]) from None
    return loads(text, source=str(path))


def loads(text: str, source: str = "<funnel definition>") -> Definition:
    loader = _LineLoader(text)
    loader.name = source
    try:
        doc = loader.get_single_data()
    except yaml.YAMLError as exc:
        raise FunnelDefinitionError(source, [f"not valid YAML: {exc}"]) from None
    finally:
        loader.dispose()
    if not isinstance(doc, dict):
        raise FunnelDefinitionError(source, ["the file must be a mapping with version, scoring, mql, sql, ..."])
    return _Validator(source).run(doc)


class _Validator:
    def __init__(self, source: str):
        self.source = source
        self.problems: list[str] = []

    def err(self, where: Any, msg: str) -> None:
        self.problems.append(f"{_at(where)}{msg}")

    def section(self, doc: dict, key: str, required: bool = True) -> dict:
        val = doc.get(key)
        if val is None:
            if required:
                self.err(doc, f"missing section `{key}`")
            return _LineDict()
        if not isinstance(val, dict):
            self.err(doc, f"`{key}` must be a mapping")
            return _LineDict()
        return val

    def number(self, sec: dict, key: str, name: str, *, positive: bool = False, integer: bool = False,
               minimum: float | None = None, default: Any = None) -> Any:
        val = sec.get(key, default)
        if val is None:
            self.err(sec, f"`{name}` is missing")
            return None
        if not (_is_int(val) if integer else _is_number(val)):
            self.err(sec, f"`{name}` must be {'an integer' if integer else 'a number'}, got {val!r}")
            return None
        if positive and val <= 0:
            self.err(sec, f"`{name}` must be greater than 0, got {val!r}")
        if minimum is not None and val < minimum:
            self.err(sec, f"`{name}` must be at least {minimum}, got {val!r}")
        return val

    def str_list(self, sec: dict, key: str, name: str, *, allowed: Sequence[str] | None = None,
                 required: bool = True) -> tuple[str, ...]:
        val = sec.get(key)
        if val is None:
            if required:
                self.err(sec, f"`{name}` is missing")
            return ()
        if not isinstance(val, list) or not all(isinstance(v, str) for v in val):
            self.err(sec, f"`{name}` must be a list of strings, got {val!r}")
            return ()
        if allowed is not None:
            for v in val:
                if v not in allowed:
                    self.err(sec, f"`{name}`: unknown value {v!r} (allowed: {', '.join(allowed)})")
        if len(set(val)) != len(val):
            self.err(sec, f"`{name}` lists a value twice")
        return tuple(val)

    # -- rules ----------------------------------------------------------------------------------------------
    def rule(self, raw: Any, index: int, half_life: Any) -> Rule | None:
        if not isinstance(raw, dict):
            self.err(raw, f"scoring.rules[{index}] must be a mapping, got {raw!r}")
            return None
        rid = raw.get("id")
        if not isinstance(rid, str) or not rid.strip():
            self.err(raw, f"scoring.rules[{index}] has no `id`")
            return None
        where = f"rule {rid!r}"
        bad = False

        def problem(msg: str) -> None:
            nonlocal bad
            bad = True
            self.err(raw, f"{where}: {msg}")

        known_keys = {"id", "kind", "feature", "operator", "value", "points", "window_days", "cap", "decays",
                      "disqualify", "description"}
        for key in raw:
            if key not in known_keys:
                problem(f"unknown key `{key}` (allowed: {', '.join(sorted(known_keys))})")
        kind = raw.get("kind")
        if kind not in KINDS:
            problem(f"unknown kind {kind!r} (allowed: {', '.join(KINDS)})")
            return None
        feature = raw.get("feature")
        if feature in BEHAVIOUR_FEATURES:
            fclass, ftype = "behaviour", "number"
        elif feature in FIT_ATTRIBUTES:
            fclass, ftype = "fit", FIT_ATTRIBUTES[feature]
        elif feature in DERIVED_FEATURES:
            fclass, ftype = "derived", DERIVED_FEATURES[feature]
        else:
            problem(f"unknown feature {feature!r} (behaviour: {', '.join(BEHAVIOUR_FEATURES)}; fit: "
                    f"{', '.join(FIT_ATTRIBUTES)}; derived: {', '.join(DERIVED_FEATURES)})")
            return None

        points = raw.get("points")
        if points is None:
            problem("missing `points`")
        elif not _is_number(points):
            problem(f"`points` must be a number, got {points!r}")
        elif points == 0:
            problem("`points` must not be 0")
        elif kind == "negative" and points > 0:
            problem(f"a negative rule needs negative `points`, got {points!r}")
        elif kind != "negative" and points < 0:
            problem(f"a {kind} rule needs positive `points`, got {points!r} (use kind: negative)")

        window = raw.get("window_days")
        if fclass == "behaviour":
            if kind == "fit":
                problem(f"kind fit needs a fit attribute, but {feature!r} is a behaviour feature")
            if window is None:
                problem(f"missing `window_days` (behaviour feature {feature!r} is counted over a window)")
            elif not _is_int(window):
                problem(f"`window_days` must be an integer, got {window!r}")
            elif window <= 0:
                problem(f"`window_days` must be greater than 0, got {window!r}")
        else:
            if kind in ("count", "threshold"):
                problem(f"kind {kind} needs a behaviour feature, but {feature!r} is a {fclass} attribute")
            if window is not None:
                problem(f"`window_days` applies to behaviour features only, not to {fclass} {feature!r}")

        cap = raw.get("cap")
        if cap is not None:
            if kind != "count":
                problem("`cap` applies to kind count only")
            elif not _is_number(cap) or cap <= 0:
                problem(f"`cap` must be a number greater than 0, got {cap!r}")
        decays = raw.get("decays", kind == "count")
        if not isinstance(decays, bool):
            problem(f"`decays` must be true or false, got {decays!r}")
        elif decays and kind != "count":
            problem("`decays` applies to kind count only (fit and threshold points do not fade)")
        disqualify = raw.get("disqualify", False)
        if not isinstance(disqualify, bool):
            problem(f"`disqualify` must be true or false, got {disqualify!r}")
        elif disqualify and kind != "negative":
            problem("`disqualify` applies to kind negative only")

        op, value = raw.get("operator"), raw.get("value")
        if kind == "count":
            if op is not None or value is not None:
                problem("a count rule takes no `operator`/`value` (it scores every occurrence)")
        elif op is None:
            problem("missing `operator`")
        elif op not in OPERATORS:
            problem(f"bad operator {op!r} (allowed: {', '.join(OPERATORS)})")
        elif value is None:
            problem("missing `value`")
        elif ftype == "number":
            if op in LIST_OPERATORS:
                problem(f"operator {op!r} needs a text feature; {feature!r} is numeric (use >=, >, =, ...)")
            elif not _is_number(value):
                problem(f"operator {op!r} on numeric {feature!r} needs a number, got {value!r}")
            elif fclass == "behaviour" and _holds(op, 0, value):
                problem(f"`{feature} {op} {value}` would hold for a contact with no activity at all; "
                        "behaviour conditions must need some activity (use days_since_last_activity for "
                        "inactivity)")
        elif op not in TEXT_OPERATORS:
            problem(f"operator {op!r} does not apply to text attribute {feature!r} "
                    f"(allowed: {', '.join(TEXT_OPERATORS)})")
        elif op in LIST_OPERATORS:
            if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
                problem(f"operator {op!r} needs a non-empty list of strings, got {value!r}")
        elif not isinstance(value, str):
            problem(f"operator {op!r} on text attribute {feature!r} needs a string, got {value!r}")
        if bad:
            return None
        return Rule(rule_id=rid, kind=kind, feature=feature, feature_class=fclass, points=points, operator=op,
                    value=value, window_days=window, cap=cap, decays=bool(decays), disqualify=bool(disqualify),
                    line=getattr(raw, "line", None))

    # -- whole document --------------------------------------------------------------------------------------
    def run(self, doc: dict) -> Definition:
        version = doc.get("version")
        if not isinstance(version, (str, int, float)) or isinstance(version, bool) or str(version).strip() == "":
            self.err(doc, "`version` is missing (every change to the definition needs a version)")
            version = ""
        name = str(doc.get("name") or "")

        scoring = self.section(doc, "scoring")
        half_life = self.number(scoring, "half_life_days", "scoring.half_life_days", positive=True)
        raw_rules = scoring.get("rules")
        rules: list[Rule] = []
        if not isinstance(raw_rules, list) or not raw_rules:
            self.err(scoring, "`scoring.rules` must be a non-empty list")
            raw_rules = []
        seen: dict[str, int | None] = {}
        for i, raw in enumerate(raw_rules):
            rid = raw.get("id") if isinstance(raw, dict) else None
            if isinstance(rid, str) and rid in seen:
                self.err(raw, f"duplicate rule id {rid!r} (first defined on line {seen[rid]})")
                continue
            if isinstance(rid, str):
                seen[rid] = getattr(raw, "line", None)
            rule = self.rule(raw, i, half_life)
            if rule:
                rules.append(rule)

        mql = self.section(doc, "mql")
        threshold = self.number(mql, "score_threshold", "mql.score_threshold", positive=True)
        min_fit = self.number(mql, "min_fit_score", "mql.min_fit_score", minimum=0, default=0)

        sql_sec = self.section(doc, "sql")
        signals = self.str_list(sql_sec, "signals", "sql.signals", allowed=BEHAVIOUR_FEATURES)
        crm_stages = self.str_list(sql_sec, "crm_lifecycle_stages", "sql.crm_lifecycle_stages", required=False)
        if not signals and not crm_stages:
            self.err(sql_sec, "the SQL rule needs `signals` or `crm_lifecycle_stages`")

        disq = self.section(doc, "disqualification", required=False)
        disq_statuses = self.str_list(disq, "crm_lead_statuses", "disqualification.crm_lead_statuses",
                                      required=False)
        recyc = self.section(doc, "recycling", required=False)
        recyc_statuses = self.str_list(recyc, "crm_lead_statuses", "recycling.crm_lead_statuses", required=False)
        for s in set(disq_statuses) & set(recyc_statuses):
            self.err(recyc, f"lead status {s!r} cannot both disqualify and recycle")

        events_sec = self.section(doc, "events")
        events: dict[str, str] = {}
        for ev, feat in events_sec.items():
            if not isinstance(ev, str) or not isinstance(feat, str):
                self.err(events_sec, f"events: {ev!r} -> {feat!r} must map an event name to a feature name")
            elif feat not in EVENT_TARGETS:
                self.err(events_sec, f"events: {ev!r} maps to unknown feature {feat!r} "
                                     f"(allowed: {', '.join(sorted(EVENT_TARGETS))})")
            else:
                events[ev] = feat

        lists_sec = self.section(doc, "lists", required=False)
        lists: dict[str, tuple[str, ...]] = {}
        for lname in lists_sec:
            lists[lname] = self.str_list(lists_sec, lname, f"lists.{lname}")
        for needed in ("personal_email_domains", "competitor_domains"):
            if needed not in lists:
                self.err(lists_sec or doc, f"`lists.{needed}` is missing (email_domain_type needs it)")

        bands_raw = doc.get("company_size_bands")
        bands: list[SizeBand] = []
        if not isinstance(bands_raw, list) or not bands_raw:
            self.err(doc, "`company_size_bands` must be a non-empty list of {min_employees, band}")
        else:
            for b in bands_raw:
                if (not isinstance(b, dict) or not _is_int(b.get("min_employees")) or b["min_employees"] < 0
                        or not isinstance(b.get("band"), str)):
                    self.err(b, f"company_size_bands: {b!r} needs an integer min_employees >= 0 and a band label")
                    continue
                bands.append(SizeBand(b["min_employees"], b["band"]))
            mins = [b.min_employees for b in bands]
            if mins != sorted(set(mins)):
                self.err(bands_raw[0] if bands_raw else doc,
                         "company_size_bands: min_employees must be strictly increasing")

        conv = self.section(doc, "conversion")
        grain = conv.get("cohort_grain", "month")
        if grain not in COHORT_GRAINS:
            self.err(conv, f"conversion.cohort_grain must be month or week, got {grain!r}")
        max_periods = self.number(conv, "max_periods_since_mql", "conversion.max_periods_since_mql",
                                  integer=True, minimum=0)
        lags_raw = conv.get("lags_to_report")
        lags: tuple[int, ...] = ()
        if not isinstance(lags_raw, list) or not lags_raw or not all(_is_int(x) and x >= 0 for x in lags_raw):
            self.err(conv, f"conversion.lags_to_report must be a non-empty list of integers >= 0, got {lags_raw!r}")
        elif len(set(lags_raw)) != len(lags_raw):
            self.err(conv, "conversion.lags_to_report lists a lag twice")
        else:
            lags = tuple(lags_raw)
        lag = self.number(conv, "sales_cycle_lag_periods", "conversion.sales_cycle_lag_periods", integer=True,
                          minimum=0)
        if lags and _is_int(lag) and lag not in lags:
            self.err(conv, f"conversion.sales_cycle_lag_periods {lag} is not in lags_to_report {list(lags)}")
        segments = self.str_list(conv, "segments", "conversion.segments", allowed=SEGMENTS)
        if segments and "all" not in segments:
            self.err(conv, "conversion.segments must include `all`")
        band = conv.get("healthy_band")
        min_rate = max_rate = None
        if not isinstance(band, dict):
            self.err(conv, "conversion.healthy_band must be {min_rate, max_rate}")
        else:
            min_rate = self.number(band, "min_rate", "conversion.healthy_band.min_rate", minimum=0)
            max_rate = self.number(band, "max_rate", "conversion.healthy_band.max_rate", minimum=0)
            if _is_number(min_rate) and _is_number(max_rate):
                if min_rate > max_rate:
                    self.err(band, f"conversion.healthy_band: min_rate {min_rate} is greater than "
                                   f"max_rate {max_rate}")
                if max_rate > 1:
                    self.err(band, f"conversion.healthy_band.max_rate {max_rate} is a rate and cannot exceed 1")

        evidence = self.evidence(doc)
        rules_from = self.rules_from(doc)
        if evidence["sql"] == "crm" and not crm_stages:
            self.err(sql_sec, "evidence.sql is crm, but `sql.crm_lifecycle_stages` lists no CRM lifecycle stage")
        if evidence["sql"] == "rules" and not signals:
            self.err(sql_sec, "evidence.sql is rules, but `sql.signals` lists no signal")

        sla = self.section(doc, "sla")
        goal = self.number(sla, "mql_goal_per_period", "sla.mql_goal_per_period", integer=True, minimum=0)
        hours = self.number(sla, "sql_follow_up_hours", "sla.sql_follow_up_hours", positive=True)

        if self.problems:
            raise FunnelDefinitionError(self.source, self.problems)
        return Definition(
            version=str(version), name=name, half_life_days=half_life, rules=tuple(rules),
            mql_score_threshold=threshold, mql_min_fit_score=min_fit, sql_signals=signals,
            sql_crm_lifecycle_stages=crm_stages, disqualify_crm_lead_statuses=disq_statuses,
            recycle_crm_lead_statuses=recyc_statuses, events=events, lists=lists,
            company_size_bands=tuple(bands), cohort_grain=grain, max_periods_since_mql=max_periods,
            lags_to_report=lags, sales_cycle_lag_periods=lag, segments=segments, healthy_min_rate=min_rate,
            healthy_max_rate=max_rate, mql_goal_per_period=goal, sql_follow_up_hours=hours, evidence=evidence,
            evidence_rules_from=rules_from, source=self.source,
        )

    def evidence(self, doc: dict) -> dict[str, str]:
        """``evidence: {stage: rules_and_crm | rules | crm}`` (optional; every stage defaults to rules_and_crm)."""
        sec = self.section(doc, "evidence", required=False)
        out = {stage: "rules_and_crm" for stage in RULE_STAGES}
        for stage, value in sec.items():
            if stage == "rules_from":
                continue
            if stage not in EVIDENCE_STAGES:
                self.err(sec, f"evidence: unknown key {stage!r} (allowed: {', '.join(EVIDENCE_STAGES)}, rules_from)")
            elif value not in EVIDENCE_CHOICES:
                self.err(sec, f"evidence.{stage} must be one of {', '.join(EVIDENCE_CHOICES)}, got {value!r}")
            elif stage not in RULE_STAGES and value != "crm":
                self.err(sec, f"evidence.{stage} can only be crm: handoff has no rules for the {stage} stage "
                              "(it comes from the CRM's records, lifecycle history and deals)")
            elif stage in RULE_STAGES:
                out[stage] = value
        return out

    def rules_from(self, doc: dict) -> date | None:
        """``evidence.rules_from: YYYY-MM-DD`` (optional): the first UTC day handoff's rules are evidence."""
        sec = self.section(doc, "evidence", required=False)
        value = sec.get("rules_from")
        if value is None:
            return None
        if isinstance(value, date) and not hasattr(value, "hour"):
            return value
        try:
            if isinstance(value, str) and len(value) == 10:
                return date.fromisoformat(value)
        except ValueError:
            pass
        self.err(sec, f"evidence.rules_from must be a date YYYY-MM-DD, got {value!r}")
        return None


# ---------------------------------------------------------------------------------------------------------------
# compile -> dbt seeds


def _fmt(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


def _csv(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    for r in rows:
        w.writerow([_fmt(v) for v in r])
    return buf.getvalue()


def seed_contents(defn: Definition) -> dict[str, str]:
    """The seed files (name -> CSV text) for a definition; ``compile`` writes them."""
    rules = []
    lists: list[tuple[str, str]] = []
    for i, r in enumerate(defn.rules, start=1):
        value_num = r.value if _is_number(r.value) else None
        value_text = r.value if isinstance(r.value, str) else None
        rules.append((r.rule_id, i, r.kind, r.feature, r.feature_class, r.operator,
                      None if r.value is None else json.dumps(r.value), value_num, value_text, r.points,
                      r.window_days, r.cap, r.decays, r.disqualify))
        if isinstance(r.value, list):
            lists.extend((f"rule.{r.rule_id}", v) for v in r.value)
    settings_rows = [
        ("version", defn.version), ("name", defn.name), ("half_life_days", defn.half_life_days),
        ("mql_score_threshold", defn.mql_score_threshold), ("mql_min_fit_score", defn.mql_min_fit_score),
        ("cohort_grain", defn.cohort_grain), ("max_periods_since_mql", defn.max_periods_since_mql),
        ("sales_cycle_lag_periods", defn.sales_cycle_lag_periods), ("healthy_min_rate", defn.healthy_min_rate),
        ("healthy_max_rate", defn.healthy_max_rate), ("mql_goal_per_period", defn.mql_goal_per_period),
        ("sql_follow_up_hours", defn.sql_follow_up_hours),
        *((f"{stage}_evidence", defn.evidence[stage]) for stage in RULE_STAGES),
        *([("evidence_rules_from", defn.evidence_rules_from.isoformat())] if defn.evidence_rules_from else []),
    ]
    named = [("sql_signals", defn.sql_signals), ("sql_crm_lifecycle_stages", defn.sql_crm_lifecycle_stages),
             ("disqualify_crm_lead_statuses", defn.disqualify_crm_lead_statuses),
             ("recycle_crm_lead_statuses", defn.recycle_crm_lead_statuses),
             ("lags_to_report", tuple(str(x) for x in defn.lags_to_report)), ("segments", defn.segments)]
    named += sorted(defn.lists.items())
    list_rows = [(name, v) for name, values in named for v in values] + lists
    bands = list(defn.company_size_bands)
    band_rows = [(b.band, b.min_employees, bands[i + 1].min_employees - 1 if i + 1 < len(bands) else None, i + 1)
                 for i, b in enumerate(bands)]
    return {
        "funnel_rules.csv": _csv(
            ["rule_id", "rule_order", "kind", "feature", "feature_class", "operator", "value", "value_num",
             "value_text", "points", "window_days", "cap", "decays", "disqualify"], rules),
        "funnel_settings.csv": _csv(["setting", "value"], settings_rows),
        "funnel_event_map.csv": _csv(["event_name", "feature"], sorted(defn.events.items())),
        "funnel_lists.csv": _csv(["list_name", "value"], list_rows),
        "company_size_bands.csv": _csv(["band", "min_employees", "max_employees", "band_order"], band_rows),
    }


def compile(defn: Definition, seeds_dir: str | Path | None = None) -> list[Path]:  # noqa: A001 - the CLI verb
    """Write the dbt seeds for ``defn`` into ``seeds_dir`` (default dbt_project/seeds); return the paths."""
    seeds = Path(seeds_dir or settings.DBT_PROJECT_DIR / "seeds")
    seeds.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in seed_contents(defn).items():
        path = seeds / name
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


def out_of_sync(defn: Definition, seeds_dir: str | Path | None = None) -> list[str]:
    """Names of the seed files that differ from what ``compile`` would write (empty when in sync)."""
    seeds = Path(seeds_dir or settings.DBT_PROJECT_DIR / "seeds")
    return [name for name, text in seed_contents(defn).items()
            if not (seeds / name).exists() or (seeds / name).read_text(encoding="utf-8") != text]


# ---------------------------------------------------------------------------------------------------------------
# CLI


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=("check", "compile"),
                        help="check: validate the definition (and that the seeds are in sync); "
                             "compile: write the dbt seeds")
    parser.add_argument("--definition", default=str(settings.FUNNEL_DEFINITION),
                        help="the funnel definition YAML (default: %(default)s)")
    parser.add_argument("--seeds-dir", default=str(settings.DBT_PROJECT_DIR / "seeds"),
                        help="where the dbt seeds live (default: %(default)s)")


def run(args: argparse.Namespace) -> int:
    try:
        defn = load(args.definition)
    except FunnelDefinitionError as exc:
        print(exc, file=sys.stderr)
        return 2
    if args.action == "check":
        stale = out_of_sync(defn, args.seeds_dir)
        print(f"{args.definition}: ok (version {defn.version}, {len(defn.rules)} rules)")
        if stale:
            print(f"seeds out of sync with the definition: {', '.join(stale)} — run `handoff funnel compile`",
                  file=sys.stderr)
            return 1
        return 0
    paths = compile(defn, args.seeds_dir)
    print(f"compiled {args.definition} (version {defn.version}) into {len(paths)} seeds in {args.seeds_dir}")
    return 0


def main(argv: Sequence[str] | argparse.Namespace | None = None) -> int:
    """``handoff funnel``: argv, or the Namespace the ``handoff`` CLI parsed with ``add_arguments``."""
    if isinstance(argv, argparse.Namespace):
        return run(argv)
    parser = argparse.ArgumentParser(prog="handoff funnel", description="Validate or compile the funnel definition.")
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
