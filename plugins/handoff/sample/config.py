"""The inputs the sample follows: the funnel definition (config/funnel.yml) and the content catalog seed.

The generator reads both files instead of repeating their lists, so a marketer's change to the funnel (a new
competitor domain, another threshold) shows up in the next sample.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parents[3]
FUNNEL_PATH = REPO_ROOT / "config" / "funnel.yml"
CATALOG_PATH = REPO_ROOT / "dbt_project" / "seeds" / "content_catalog.csv"

# Features that describe the contact/company (fit), as opposed to behaviour counted from events.
FIT_ATTRIBUTES = frozenset({
    "company_size_band", "industry", "annual_revenue", "monthly_web_visitors", "cms", "persona",
    "email_domain_type", "country",
})


@dataclass(frozen=True)
class Rule:
    id: str
    kind: str
    feature: str
    points: float
    window_days: int | None = None
    cap: float | None = None
    operator: str | None = None
    value: Any = None
    disqualify: bool = False


@dataclass(frozen=True)
class Funnel:
    version: str
    threshold: float
    min_fit: float
    half_life_days: float
    rules: tuple[Rule, ...]
    personal_domains: tuple[str, ...]
    competitor_domains: tuple[str, ...]
    size_bands: tuple[tuple[int, str], ...]  # (min_employees, band), ascending
    sql_signals: tuple[str, ...]
    events: dict[str, str] = field(default_factory=dict)

    @property
    def fit_rules(self) -> tuple[Rule, ...]:
        return tuple(r for r in self.rules if r.feature in FIT_ATTRIBUTES)

    @property
    def count_rules(self) -> tuple[Rule, ...]:
        return tuple(r for r in self.rules if r.kind == "count")

    @property
    def threshold_rules(self) -> tuple[Rule, ...]:
        return tuple(r for r in self.rules if r.kind == "threshold")

    @property
    def behaviour_negative_rules(self) -> tuple[Rule, ...]:
        return tuple(r for r in self.rules if r.kind == "negative" and r.feature not in FIT_ATTRIBUTES)

    def size_band(self, employees: int) -> str:
        band = self.size_bands[0][1]
        for lower, label in self.size_bands:
            if employees >= lower:
                band = label
        return band


@dataclass(frozen=True)
class CatalogEntry:
    path: str
    content_type: str
    buying_stage: str  # '' for pages outside the buying journey (careers)
    title: str


def load_funnel(path: Path = FUNNEL_PATH) -> Funnel:
    try:
        doc = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: the funnel definition is missing; the sample follows its rules") from None
    try:
        rules = tuple(
            Rule(id=r["id"], kind=r["kind"], feature=r["feature"], points=float(r["points"]),
                 window_days=r.get("window_days"), cap=r.get("cap"), operator=r.get("operator"),
                 value=r.get("value"), disqualify=bool(r.get("disqualify", False)))
            for r in doc["scoring"]["rules"]
        )
        bands = tuple(sorted((int(b["min_employees"]), str(b["band"])) for b in doc["company_size_bands"]))
        return Funnel(
            version=str(doc["version"]),
            threshold=float(doc["mql"]["score_threshold"]),
            min_fit=float(doc["mql"].get("min_fit_score", 0)),
            half_life_days=float(doc["scoring"].get("half_life_days") or 0),
            rules=rules,
            personal_domains=tuple(doc["lists"]["personal_email_domains"]),
            competitor_domains=tuple(doc["lists"]["competitor_domains"]),
            size_bands=bands,
            sql_signals=tuple(doc["sql"]["signals"]),
            events=dict(doc.get("events") or {}),
        )
    except (KeyError, TypeError) as exc:
        raise ValueError(f"{path}: the sample generator needs the key {exc} in the funnel definition") from None


def load_catalog(path: Path = CATALOG_PATH) -> tuple[CatalogEntry, ...]:
    try:
        with path.open(newline="") as fh:
            rows = list(csv.DictReader(fh))
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: the content catalog seed is missing") from None
    entries = []
    for line, row in enumerate(rows, start=2):
        try:
            entries.append(CatalogEntry(row["path"], row["content_type"], row["buying_stage"] or "", row["title"]))
        except KeyError as exc:
            raise ValueError(f"{path}:{line}: missing column {exc} (need path, content_type, buying_stage, "
                             "title)") from None
    if not entries:
        raise ValueError(f"{path}: the content catalog is empty")
    return tuple(entries)


def compare(operator: str, actual: Any, expected: Any) -> bool:
    """Evaluate one rule condition the way the funnel definition spells it (lists match on any member)."""
    if actual is None:
        return False
    if isinstance(actual, (list, tuple)):
        if operator == "in":
            return any(a in expected for a in actual)
        if operator == "not_in":
            return not any(a in expected for a in actual)
        if operator in ("=", "!="):
            return (expected in actual) == (operator == "=")
        return False
    if operator == "in":
        return actual in expected
    if operator == "not_in":
        return actual not in expected
    if operator == "=":
        return actual == expected
    if operator == "!=":
        return actual != expected
    if operator == ">=":
        return actual >= expected
    if operator == ">":
        return actual > expected
    if operator == "<=":
        return actual <= expected
    if operator == "<":
        return actual < expected
    raise ValueError(f"unknown operator {operator!r} in the funnel definition")


def fit_scores(funnel: Funnel, attrs: dict[str, Any]) -> tuple[float, float]:
    """(fit score with the fit-attribute negatives, fit score from positive fit rules only)."""
    total = positive = 0.0
    for rule in funnel.fit_rules:
        if rule.operator and compare(rule.operator, attrs.get(rule.feature), rule.value):
            total += rule.points
            if rule.points > 0:
                positive += rule.points
    return total, positive


def is_disqualified_by_fit(funnel: Funnel, attrs: dict[str, Any]) -> bool:
    return any(r.disqualify and r.operator and compare(r.operator, attrs.get(r.feature), r.value)
               for r in funnel.fit_rules)
