"""Bounds of a contact's score on a day, over every reasonable reading of the funnel's scoring rules.

``history`` is a list of (day, features of that day) for the days before ``day`` (within the longest window);
``today`` the features of ``day`` itself; ``ever`` the all-time feature counts before ``day``.
"""

from __future__ import annotations

from handoff.funnel.operators import holds
from handoff.sample.simulation_tables import SimulationTables


def add_counts(totals: dict[str, int], counts: dict[str, int]) -> None:
    """Add ``counts`` into ``totals``, key by key."""
    for key, count in counts.items():
        totals[key] = totals.get(key, 0) + count


def upper_bound(tables: SimulationTables, fit: float, history: list, day: int, today: dict) -> float:
    """The highest score any reading of the rules gives (no decay, windows a day longer, no negatives)."""
    totals = [0] * len(tables.count_rules)
    rules_by_feature = tables.count_rules_by_feature
    visit_days = 0
    repeat_window = tables.repeat_visit_window
    for past_day, features in (*history, (day, today)):
        age = day - past_day
        for feature, count in features.items():
            for rule_index, window in rules_by_feature.get(feature, ()):
                if age <= window:
                    totals[rule_index] += count
        if age <= repeat_window and "sessions" in features:
            visit_days += 1
    score = fit
    for (_feature, _window, points, cap), count in zip(tables.count_rules, totals, strict=True):
        if count:
            score += min(cap, points * count)
    for feature, window, operator, value, points in tables.threshold_rules:
        if points <= 0:
            continue
        if feature == "repeat_visit_days":
            count = visit_days
        else:
            count = sum(features.get(feature, 0) for past_day, features in (*history, (day, today))
                        if day - past_day <= window)
        if holds(operator, count, value):
            score += points
    return score


def quick_bound(tables: SimulationTables, fit: float, ever: dict, today: dict) -> float:
    """An even looser upper bound, from all-time counts: when it stays under the threshold, skip the rest."""
    score = fit + tables.threshold_points
    for feature, _window, points, cap in tables.count_rules:
        count = ever.get(feature, 0) + today.get(feature, 0)
        if count:
            score += min(cap, points * count)
    return score


def lower_bound(tables: SimulationTables, fit: float, history: list, day: int, today: dict, *,
                ever: dict) -> float:
    """The lowest score any reading gives (decayed a day more, windows a day shorter, every negative)."""
    totals = [0.0] * len(tables.count_rules)
    rules_by_feature = tables.count_rules_by_feature
    decay = tables.decay
    for past_day, features in (*history, (day, today)):
        age = day - past_day
        weight = decay[age + 1]
        for feature, count in features.items():
            for rule_index, window in rules_by_feature.get(feature, ()):
                if age <= window - 2:
                    totals[rule_index] += count * weight
    score = fit
    for (_feature, _window, points, cap), total in zip(tables.count_rules, totals, strict=True):
        if total:
            score += min(cap, points * total)
    for feature, operator, value, points in tables.negative_rules:
        if holds(operator, ever.get(feature, 0) + today.get(feature, 0), value):
            score += min(0.0, points)
    return score
