"""Validating a parsed funnel definition into the typed ``Definition`` (model.py), one problem sentence per mistake,
each naming the file, the line and the rule id or key (``loading.loads`` calls ``Validator(source).run(doc)``)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from typing import Any

from handoff.funnel.model import Definition, FunnelDefinitionError, Rule, SizeBand
from handoff.funnel.operators import LIST_OPERATORS, OPERATORS, TEXT_OPERATORS, holds, is_number
from handoff.funnel.vocabulary import (
    BEHAVIOUR_FEATURES,
    COHORT_GRAINS,
    DERIVED_FEATURES,
    EVENT_TARGETS,
    EVIDENCE_CHOICES,
    EVIDENCE_STAGES,
    FIT_ATTRIBUTES,
    KINDS,
    RULE_STAGES,
    SEGMENTS,
)


class LineDict(dict):
    """A mapping read from the YAML, with the 1-based line it starts on and the line of each of its keys
    (``loading`` fills both from the YAML node marks)."""

    line: int | None = None
    key_lines: dict[Any, int]

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.key_lines = {}

    def line_of(self, key: Any = None) -> int | None:
        """The line ``key`` is written on (the mapping's own line for a missing key or none)."""
        return self.key_lines.get(key, self.line) if key is not None else self.line


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


class Validator:
    def __init__(self, source: str):
        self.source = source
        self.problems: list[str] = []

    def err(self, where: Any, msg: str, key: Any = None) -> None:
        """Record a problem at ``where`` (a mapping read from the YAML; at its ``key`` when given):
        "<file>, line N: <rule or key>: <msg>"."""
        line = where.line_of(key) if isinstance(where, LineDict) else None
        self.problems.append(f"{self.source}, line {line}: {msg}" if line else f"{self.source}: {msg}")

    def section(self, doc: dict, key: str, required: bool = True) -> dict:
        val = doc.get(key)
        if val is None:
            if required:
                self.err(doc, f"missing section `{key}`")
            return LineDict()
        if not isinstance(val, dict):
            self.err(doc, f"`{key}` must be a mapping")
            return LineDict()
        return val

    def number(self, sec: dict, key: str, name: str, *, positive: bool = False, integer: bool = False,
               minimum: float | None = None, default: Any = None) -> Any:
        val = sec.get(key, default)
        if val is None:
            self.err(sec, f"`{name}` is missing")
            return None
        if not (_is_int(val) if integer else is_number(val)):
            self.err(sec, f"`{name}` must be {'an integer' if integer else 'a number'}, got {val!r}", key)
            return None
        if positive and val <= 0:
            self.err(sec, f"`{name}` must be greater than 0, got {val!r}", key)
        if minimum is not None and val < minimum:
            self.err(sec, f"`{name}` must be at least {minimum}, got {val!r}", key)
        return val

    def str_list(self, sec: dict, key: str, name: str, *, allowed: Sequence[str] | None = None,
                 required: bool = True) -> tuple[str, ...]:
        val = sec.get(key)
        if val is None:
            if required:
                self.err(sec, f"`{name}` is missing")
            return ()
        if not isinstance(val, list) or not all(isinstance(v, str) for v in val):
            self.err(sec, f"`{name}` must be a list of strings, got {val!r}", key)
            return ()
        if allowed is not None:
            for v in val:
                if v not in allowed:
                    self.err(sec, f"`{name}`: unknown value {v!r} (allowed: {', '.join(allowed)})", key)
        if len(set(val)) != len(val):
            self.err(sec, f"`{name}` lists a value twice", key)
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

        def problem(msg: str, key: str | None = None) -> None:
            nonlocal bad
            bad = True
            self.err(raw, f"{where}: {msg}", key)

        known_keys = {"id", "kind", "feature", "operator", "value", "points", "window_days", "cap", "decays",
                      "disqualify", "description"}
        for key in raw:
            if key not in known_keys:
                problem(f"unknown key `{key}` (allowed: {', '.join(sorted(known_keys))})", key)
        kind = raw.get("kind")
        if kind not in KINDS:
            problem(f"unknown kind {kind!r} (allowed: {', '.join(KINDS)})", "kind")
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
                    f"{', '.join(FIT_ATTRIBUTES)}; derived: {', '.join(DERIVED_FEATURES)})", "feature")
            return None

        points = raw.get("points")
        if points is None:
            problem("missing `points`", "points")
        elif not is_number(points):
            problem(f"`points` must be a number, got {points!r}", "points")
        elif points == 0:
            problem("`points` must not be 0", "points")
        elif kind == "negative" and points > 0:
            problem(f"a negative rule needs negative `points`, got {points!r}", "points")
        elif kind != "negative" and points < 0:
            problem(f"a {kind} rule needs positive `points`, got {points!r} (use kind: negative)", "points")

        window = raw.get("window_days")
        if fclass == "behaviour":
            if kind == "fit":
                problem(f"kind fit needs a fit attribute, but {feature!r} is a behaviour feature", "feature")
            if window is None:
                problem(f"missing `window_days` (behaviour feature {feature!r} is counted over a window)",
                        "window_days")
            elif not _is_int(window):
                problem(f"`window_days` must be an integer, got {window!r}", "window_days")
            elif window <= 0:
                problem(f"`window_days` must be greater than 0, got {window!r}", "window_days")
        else:
            if kind in ("count", "threshold"):
                problem(f"kind {kind} needs a behaviour feature, but {feature!r} is a {fclass} attribute", "feature")
            if window is not None:
                problem(f"`window_days` applies to behaviour features only, not to {fclass} {feature!r}", "window_days")

        cap = raw.get("cap")
        if cap is not None:
            if kind != "count":
                problem("`cap` applies to kind count only", "cap")
            elif not is_number(cap) or cap <= 0:
                problem(f"`cap` must be a number greater than 0, got {cap!r}", "cap")
        decays = raw.get("decays", kind == "count")
        if not isinstance(decays, bool):
            problem(f"`decays` must be true or false, got {decays!r}", "decays")
        elif decays and kind != "count":
            problem("`decays` applies to kind count only (fit and threshold points do not fade)", "decays")
        disqualify = raw.get("disqualify", False)
        if not isinstance(disqualify, bool):
            problem(f"`disqualify` must be true or false, got {disqualify!r}", "disqualify")
        elif disqualify and kind != "negative":
            problem("`disqualify` applies to kind negative only", "disqualify")

        op, value = raw.get("operator"), raw.get("value")
        if kind == "count":
            if op is not None or value is not None:
                problem("a count rule takes no `operator`/`value` (it scores every occurrence)", "operator")
        elif op is None:
            problem("missing `operator`")
        elif op not in OPERATORS:
            problem(f"bad operator {op!r} (allowed: {', '.join(OPERATORS)})", "operator")
        elif value is None:
            problem("missing `value`")
        elif ftype == "number":
            if op in LIST_OPERATORS:
                problem(f"operator {op!r} needs a text feature; {feature!r} is numeric (use >=, >, =, ...)", "operator")
            elif not is_number(value):
                problem(f"operator {op!r} on numeric {feature!r} needs a number, got {value!r}", "value")
            elif fclass == "behaviour" and holds(op, 0, value):
                problem(f"`{feature} {op} {value}` would hold for a contact with no activity at all; "
                        "behaviour conditions must need some activity (use days_since_last_activity for "
                        "inactivity)", "value")
        elif op not in TEXT_OPERATORS:
            problem(f"operator {op!r} does not apply to text attribute {feature!r} "
                    f"(allowed: {', '.join(TEXT_OPERATORS)})", "operator")
        elif op in LIST_OPERATORS:
            if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
                problem(f"operator {op!r} needs a non-empty list of strings, got {value!r}", "value")
        elif not isinstance(value, str):
            problem(f"operator {op!r} on text attribute {feature!r} needs a string, got {value!r}", "value")
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
                self.err(events_sec, f"events: {ev!r} -> {feat!r} must map an event name to a feature name", ev)
            elif feat not in EVENT_TARGETS:
                self.err(events_sec, f"events: {ev!r} maps to unknown feature {feat!r} "
                                     f"(allowed: {', '.join(sorted(EVENT_TARGETS))})", ev)
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
            self.err(conv, f"conversion.cohort_grain must be month or week, got {grain!r}", "cohort_grain")
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
            if is_number(min_rate) and is_number(max_rate):
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
                self.err(sec, f"evidence: unknown key {stage!r} (allowed: {', '.join(EVIDENCE_STAGES)}, rules_from)",
                         stage)
            elif value not in EVIDENCE_CHOICES:
                self.err(sec, f"evidence.{stage} must be one of {', '.join(EVIDENCE_CHOICES)}, got {value!r}", stage)
            elif stage not in RULE_STAGES and value != "crm":
                self.err(sec, f"evidence.{stage} can only be crm: handoff has no rules for the {stage} stage "
                              "(it comes from the CRM's records, lifecycle history and deals)", stage)
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
        self.err(sec, f"evidence.rules_from must be a date YYYY-MM-DD, got {value!r}", "rules_from")
        return None
