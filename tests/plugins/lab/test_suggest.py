"""`handoff funnel suggest` without a warehouse: snapshots with a planted effect, the folds never train on the
future, and the candidate it writes is a valid definition with the points it printed."""

from __future__ import annotations

import math
import random
from datetime import date, timedelta

import numpy as np
from handoff import settings
from handoff.funnel import load, loads
from handoff.lab.suggest import DOUBLING_POINTS, Snapshots, candidate_text, suggest_from, time_folds

HORIZON = 30
DAYS = [date(2026, 1, 7) + timedelta(days=7 * i) for i in range(40)]


def _planted(rows_per_day: int = 150, seed: int = 3) -> tuple[Snapshots, float]:
    """Every rule fires at random; only form_fill moves the odds: ×e^1.2 per form (up to its cap of 2)."""
    current = load(settings.FUNNEL_DEFINITION)
    rule_ids = tuple(r.rule_id for r in current.rules)
    form = rule_ids.index("form_fill")
    rng = random.Random(seed)
    units, labels, days = [], [], []
    for day in DAYS:
        for _ in range(rows_per_day):
            row = [float(rng.random() < 0.3) for _ in rule_ids]
            row[form] = float(rng.choice((0, 1, 2)))
            p = 1 / (1 + math.exp(-(-3.0 + 1.2 * row[form])))
            units.append(row)
            labels.append(rng.random() < p)
            days.append(day)
    return Snapshots(rule_ids, days, np.array(units), np.array(labels)), 1.2


def test_folds_never_train_on_a_label_whose_horizon_reaches_the_validation_days():
    folds = time_folds(DAYS * 3, HORIZON)
    assert len(folds) == 2
    for train, valid in folds:
        first_valid = min((DAYS * 3)[i] for i in valid)
        assert max((DAYS * 3)[i] for i in train) + timedelta(days=HORIZON) < first_valid


def test_the_planted_rule_gets_its_points_and_the_rules_without_effect_get_few_or_none():
    current = load(settings.FUNNEL_DEFINITION)
    snapshots, planted = _planted()
    result = suggest_from(current, snapshots, HORIZON)
    by_rule = {item.rule.rule_id: item for item in result.rules}
    # 1.2 log-odds per form is 1.2 / ln 2 doublings: 17 points at 10 points per doubling, give or take the noise
    assert abs(by_rule["form_fill"].points - planted * DOUBLING_POINTS / math.log(2)) <= 3
    no_effect = [item for rid, item in by_rule.items() if rid != "form_fill" and not item.rule.disqualify]
    assert all(item.points is None or abs(item.points) <= 2 for item in no_effect)
    assert by_rule["neg_competitor"].points == -100  # disqualifying rules are kept as they are
    assert result.folds and all(auc > 0.6 for _, _, auc, _ in result.folds)


def test_the_candidate_is_a_valid_definition_with_the_suggested_points(tmp_path):
    current = load(settings.FUNNEL_DEFINITION)
    result = suggest_from(current, _planted()[0], HORIZON)
    text = candidate_text(result, "2026.12.0-suggested")
    candidate = loads(text, source="candidate")
    assert candidate.version == "2026.12.0-suggested"
    assert candidate.mql_score_threshold == result.threshold
    kept = {item.rule.rule_id: item for item in result.rules if item.points is not None}
    assert {r.rule_id for r in candidate.rules} == set(kept)  # the others are commented out, with their reason
    form = next(r for r in candidate.rules if r.rule_id == "form_fill")
    old_form = next(r for r in current.rules if r.rule_id == "form_fill")
    assert form.points == kept["form_fill"].points
    assert form.cap == round(form.points * old_form.cap / old_form.points)  # still two forms' worth
    assert text.count("# suggest:") >= len(current.rules)
    assert "config/funnel.yml" in text.splitlines()[2] and "backtest" in text.splitlines()[2]
