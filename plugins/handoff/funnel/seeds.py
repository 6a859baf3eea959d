"""The dbt seed compiler: ``compile(definition, seeds_dir)`` writes the seeds that carry the funnel rules as data
(``funnel_rules.csv``, ``funnel_settings.csv``, ``funnel_event_map.csv``, ``funnel_lists.csv``,
``company_size_bands.csv``). The SQL evaluates rules generically by joining to those seeds, so changing the YAML
and re-compiling changes the scores with no SQL edit."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from handoff import settings
from handoff.funnel.model import Definition
from handoff.funnel.operators import is_number
from handoff.funnel.vocabulary import RULE_STAGES


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
        value_num = r.value if is_number(r.value) else None
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

