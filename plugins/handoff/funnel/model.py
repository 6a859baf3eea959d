"""The typed funnel definition: what config/funnel.yml says, once validated (``handoff.funnel.load`` builds it).

Everything that reads the definition (the dbt seed compiler, the sample generator, the push, the CLI) reads
these objects, never the YAML.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from handoff.funnel.operators import holds


class FunnelDefinitionError(ValueError):
    """The funnel definition is invalid; ``problems`` lists every problem found (one sentence each)."""

    def __init__(self, path: str | Path, problems: Sequence[str]):
        self.path = str(path)
        self.problems = list(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"{self.path}: invalid funnel definition ({len(self.problems)} problem"
                         f"{'s' if len(self.problems) != 1 else ''}):\n{lines}")




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

    def holds(self, actual: Any) -> bool:
        """Whether ``actual`` (an attribute, a window's total, a derived value) meets the rule's condition;
        a count rule has none and never "holds"."""
        return self.operator is not None and holds(self.operator, actual, self.value)

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


    # -- views the readers share ------------------------------------------------------------------------------
    @property
    def fit_rules(self) -> tuple[Rule, ...]:
        """Rules on a fit attribute (kind fit, or negative on an attribute)."""
        return tuple(r for r in self.rules if r.feature_class == "fit")

    @property
    def count_rules(self) -> tuple[Rule, ...]:
        return tuple(r for r in self.rules if r.kind == "count")

    @property
    def threshold_rules(self) -> tuple[Rule, ...]:
        return tuple(r for r in self.rules if r.kind == "threshold")

    @property
    def behaviour_negative_rules(self) -> tuple[Rule, ...]:
        """Negative rules that are not on a fit attribute (behaviour features and derived values)."""
        return tuple(r for r in self.rules if r.kind == "negative" and r.feature_class != "fit")

    def size_band(self, employees: int) -> str:
        """The highest band whose lower bound ``employees`` reaches (the first band below every bound)."""
        band = self.company_size_bands[0].band
        for b in self.company_size_bands:
            if employees >= b.min_employees:
                band = b.band
        return band

    def fit_scores(self, attrs: dict[str, Any]) -> tuple[float, float]:
        """(fit score with the fit-attribute negatives, fit score from positive fit rules only)."""
        total = positive = 0.0
        for rule in self.fit_rules:
            if rule.holds(attrs.get(rule.feature)):
                total += rule.points
                if rule.points > 0:
                    positive += rule.points
        return total, positive

    def disqualified_by_fit(self, attrs: dict[str, Any]) -> bool:
        return any(r.disqualify and r.holds(attrs.get(r.feature)) for r in self.fit_rules)
