"""``handoff funnel suggest [--out FILE] [--horizon-days N]``: points for the existing rules, learnt from history.

How (docs/funnel.md "Changing the definition safely"):

1. **Snapshots.** Every 7th day of the history, each contact that is a lead by then, not yet an opportunity and
   not disqualified, is one row: its rule hits *that day* (the point-in-time ``int_contact_rule_hits_daily``: the
   facts known by that day only; fit hits from the CRM's attributes, as production scores them), in units of the
   rule (a count rule's capped count, 1 for a threshold, fit or negative rule that fired). Its label: an
   opportunity within ``horizon`` days after the snapshot. A snapshot whose horizon reaches past the history's end
   is left out (its outcome is not known yet).
2. **Regression.** A logistic regression (scikit-learn, L2) of the label on the units. Checked by time: each fold
   trains on snapshots whose horizon ended before the fold's first day and scores the fold (AUC), beside the
   current points' AUC on the same rows; never a later day in training than in validation. The penalty is the
   one of ``STRENGTHS`` whose folds score best; the last fit uses every snapshot.
3. **Points.** The coefficient per unit, scaled so that 10 points double the odds of an opportunity; a rule whose
   coefficient does not point its way (≤ 0 for a positive rule, ≥ 0 for a negative one) is commented out.
   Disqualifying rules are policy, not scoring: kept as they are. The MQL threshold and the minimum fit score are
   moved to the suggested scale so that the share of snapshots above them stays what it is today.
4. **The candidate.** config/funnel.yml with the new points, a comment on every rule, and a new version, written to
   ``--out`` (never config/funnel.yml itself). ``handoff funnel backtest <out>`` measures it on history.
"""

from __future__ import annotations

import argparse
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from handoff import settings
from handoff.funnel import Definition, Rule, load

DOUBLING_POINTS = 10  # points that double the odds of an opportunity
SNAPSHOT_EVERY_DAYS = 7
FOLDS = 2
STRENGTHS = (0.003, 0.01, 0.03, 0.1, 0.3, 1.0)  # the inverse L2 penalties tried (scikit-learn's C)

SNAPSHOTS_SQL = """
with bounds as (
    select min(score_date) as first_day, max(score_date) as last_day from intermediate.int_contact_scores_daily
),
days as (
    select day::date as snapshot_date
    from bounds
    cross join generate_series(bounds.first_day, bounds.last_day - %(horizon)s, %(every)s * interval '1 day') as day
),
snapshots as (
    select contacts.contact_id, days.snapshot_date,
        contacts.opportunity_at is not null
            and contacts.opportunity_at < ((days.snapshot_date + 1 + %(horizon)s)::timestamp at time zone 'UTC')
            as reached_opportunity
    from marts.dim_contacts as contacts
    cross join days
    where contacts.lead_at < ((days.snapshot_date + 1)::timestamp at time zone 'UTC')
        and (contacts.opportunity_at is null
             or contacts.opportunity_at >= ((days.snapshot_date + 1)::timestamp at time zone 'UTC'))
        and (contacts.disqualified_at is null
             or contacts.disqualified_at >= ((days.snapshot_date + 1)::timestamp at time zone 'UTC'))
)
select snapshots.contact_id, snapshots.snapshot_date, snapshots.reached_opportunity,
    coalesce(array_agg(hits.rule_id) filter (where hits.rule_id is not null), '{}') as rule_ids,
    coalesce(array_agg(hits.points) filter (where hits.rule_id is not null), '{}') as points
from snapshots
left join lateral (
    select daily.rule_id, daily.points from intermediate.int_contact_rule_hits_daily as daily
    where daily.score_date = snapshots.snapshot_date and daily.contact_id = snapshots.contact_id
    union all
    select fit.rule_id, fit.points from intermediate.int_contact_fit_rule_hits as fit
    where fit.contact_id = snapshots.contact_id
) as hits on true
group by snapshots.contact_id, snapshots.snapshot_date, snapshots.reached_opportunity
order by snapshots.snapshot_date, snapshots.contact_id
"""


@dataclass(frozen=True)
class Snapshots:
    rule_ids: tuple[str, ...]  # the matrix's columns
    days: list[date]  # per row
    units: object  # numpy array rows x rules: the rule's units that day
    labels: object  # numpy bool array: an opportunity within the horizon


@dataclass(frozen=True)
class RuleSuggestion:
    rule: Rule
    coefficient: float | None  # log-odds per unit; None: not fitted (disqualifying, or never fired)
    points: float | None  # suggested points per unit; None: commented out (or kept, when disqualifying)
    share_fired: float  # of the snapshots
    note: str


@dataclass(frozen=True)
class Suggestion:
    current: Definition
    rules: tuple[RuleSuggestion, ...]
    threshold: float
    min_fit: float
    snapshots: int
    positives: int
    first_day: date
    last_day: date
    horizon_days: int
    folds: tuple[tuple[date, int, float, float], ...]  # (first validation day, rows, AUC suggested, AUC current)


def read_snapshots(definition: Definition, horizon_days: int, dbname: str | None = None) -> Snapshots:
    import numpy as np  # noqa: PLC0415

    from handoff.lab.backtest import connect  # noqa: PLC0415

    per_unit = {r.rule_id: r.points for r in definition.rules}
    rule_ids = tuple(r.rule_id for r in definition.rules)
    column = {rule_id: i for i, rule_id in enumerate(rule_ids)}
    with connect(dbname) as conn:
        rows = conn.execute(SNAPSHOTS_SQL, {"horizon": horizon_days, "every": SNAPSHOT_EVERY_DAYS}).fetchall()
    units = np.zeros((len(rows), len(rule_ids)))
    labels = np.zeros(len(rows), dtype=bool)
    days = []
    for i, (_, day, reached, hit_ids, points) in enumerate(rows):
        days.append(day)
        labels[i] = reached
        for rule_id, earned in zip(hit_ids, points, strict=True):
            if rule_id in column:  # a rule the warehouse scored that the definition no longer has is ignored
                units[i, column[rule_id]] = float(earned) / per_unit[rule_id]
    return Snapshots(rule_ids, days, units, labels)


def _fit(units, labels, strength: float):
    from sklearn.linear_model import LogisticRegression  # noqa: PLC0415

    return LogisticRegression(C=strength, max_iter=2000).fit(units, labels)


def time_folds(days: Sequence[date], horizon_days: int, folds: int = FOLDS) -> list[tuple[list[int], list[int]]]:
    """(train rows, validation rows) per fold: the last ``folds`` equal spans of days validate in turn; each trains
    on the rows whose horizon ended before its first validation day, so no label it learns from is later."""
    distinct = sorted(set(days))
    span = max(1, len(distinct) // (folds + 1))
    out = []
    for k in range(1, folds + 1):
        first = distinct[min(k * span, len(distinct) - 1)]
        last = distinct[(k + 1) * span - 1] if k < folds else distinct[-1]
        train = [i for i, d in enumerate(days) if (first - d).days > horizon_days]
        valid = [i for i, d in enumerate(days) if first <= d <= last]
        if train and valid:
            out.append((train, valid))
    return out


def suggest(horizon_days: int = 60, dbname: str | None = None) -> Suggestion:
    """Suggest points for config/funnel.yml's rules from the warehouse's history."""
    current = load(settings.FUNNEL_DEFINITION)
    return suggest_from(current, read_snapshots(current, horizon_days, dbname), horizon_days)


def suggest_from(current: Definition, snap: Snapshots, horizon_days: int) -> Suggestion:
    """The regression, its check by time and the points, from snapshots (``read_snapshots``)."""
    import numpy as np  # noqa: PLC0415
    from sklearn.metrics import roc_auc_score  # noqa: PLC0415

    if len(snap.days) == 0 or snap.labels.all() or not snap.labels.any():
        raise ValueError(f"not enough history to learn from: {len(snap.days)} snapshots, "
                         f"{int(snap.labels.sum())} reached an opportunity within {horizon_days} days")
    fitted = [r for r in current.rules if not r.disqualify]
    cols = [snap.rule_ids.index(r.rule_id) for r in fitted]
    x = snap.units[:, cols]
    current_points = np.array([r.points for r in fitted])
    # the regularisation strength is chosen by time too: the one whose folds score best on average
    scored: dict[float, list[tuple[date, int, float, float]]] = {c: [] for c in STRENGTHS}
    for train, valid in time_folds(snap.days, horizon_days):
        y_train, y_valid = snap.labels[train], snap.labels[valid]
        if y_train.all() or not y_train.any() or y_valid.all() or not y_valid.any():
            continue
        current_auc = float(roc_auc_score(y_valid, x[valid] @ current_points))
        for strength in STRENGTHS:
            model = _fit(x[train], y_train, strength)
            scored[strength].append((snap.days[valid[0]], len(valid),
                                     float(roc_auc_score(y_valid, model.decision_function(x[valid]))), current_auc))
    strength = max(STRENGTHS, key=lambda c: (np.mean([f[2] for f in scored[c]]) if scored[c] else 0, -c))
    folds = scored[strength]
    coefficients = dict(zip((r.rule_id for r in fitted), _fit(x, snap.labels, strength).coef_[0], strict=True))
    scale = DOUBLING_POINTS / math.log(2)
    suggestions = []
    new_points = []
    for i, rule in enumerate(current.rules):
        share = float((snap.units[:, i] != 0).mean())
        if rule.disqualify:
            suggestions.append(RuleSuggestion(rule, None, rule.points, share, "disqualifying: policy, kept as is"))
            new_points.append(rule.points)
            continue
        coef = float(coefficients[rule.rule_id])
        points = round(coef * scale)
        if share == 0:
            suggestions.append(RuleSuggestion(rule, None, None, share, "never fired on a snapshot: no evidence"))
            new_points.append(0.0)
        elif (rule.points > 0 and points <= 0) or (rule.points < 0 and points >= 0):
            suggestions.append(RuleSuggestion(rule, coef, None, share, "does not predict an opportunity its way"))
            new_points.append(0.0)
        else:
            suggestions.append(RuleSuggestion(rule, coef, float(points), share, f"x{math.exp(coef):.2f} odds per unit"))
            new_points.append(float(points))
    new = np.array(new_points)
    old = np.array([r.points for r in current.rules])
    fit_cols = [i for i, r in enumerate(current.rules) if r.feature_class == "fit" and r.kind == "fit"]
    threshold = _same_share(snap.units @ old, snap.units @ new, current.mql_score_threshold)
    min_fit = _same_share(snap.units[:, fit_cols] @ old[fit_cols], snap.units[:, fit_cols] @ new[fit_cols],
                          current.mql_min_fit_score)
    return Suggestion(current, tuple(suggestions), threshold, min_fit, len(snap.days), int(snap.labels.sum()),
                      min(snap.days), max(snap.days), horizon_days, tuple(folds))


def _same_share(old_scores, new_scores, old_threshold: float) -> float:
    """The threshold on the new scores above which the same share of snapshots lies as above ``old_threshold``."""
    import numpy as np  # noqa: PLC0415

    share = float((old_scores >= old_threshold).mean())
    if share == 0:
        return float(old_threshold)
    return float(max(1, round(np.quantile(new_scores, 1 - share, method="higher"))))


# -- the candidate YAML -------------------------------------------------------------------------------------------
def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def candidate_text(suggestion: Suggestion, version: str) -> str:
    """config/funnel.yml with the suggested points, threshold and version, and a comment on every rule."""
    current = suggestion.current
    lines = Path(current.source or settings.FUNNEL_DEFINITION).read_text(encoding="utf-8").splitlines()
    auc = "; ".join(f"from {d}: {n} snapshots, AUC {a:.3f} (current points {c:.3f})"
                    for d, n, a, c in suggestion.folds) or "too little history to check by time"
    header = [
        f"# Suggested by `handoff funnel suggest` from {current.version}: {suggestion.snapshots} weekly snapshots "
        f"{suggestion.first_day}..{suggestion.last_day},",
        f"# {suggestion.positives} of them reached an opportunity within {suggestion.horizon_days} days. "
        f"{DOUBLING_POINTS} points double the odds. Checked by time: {auc}.",
        "# Review it, run `handoff funnel backtest` on it, and commit it as config/funnel.yml only with the team's "
        "agreement.",
    ]
    rule_lines = sorted((s.rule.line, s) for s in suggestion.rules if s.rule.line)
    for position, (line_no, item) in enumerate(rule_lines):
        end = rule_lines[position + 1][0] - 1 if position + 1 < len(rule_lines) else line_no
        for index in range(line_no - 1, end):
            lines[index] = _rewrite_rule_line(lines[index], item)
        lines[line_no - 1] += f"  # {_comment(item)}"
        if item.points is None and not item.rule.disqualify:
            for index in range(line_no - 1, end):
                lines[index] = re.sub(r"^(\s*)", r"\1# ", lines[index], count=1)
    text = "\n".join(header + lines) + "\n"
    text = re.sub(r'(?m)^version:.*$', f'version: "{version}"', text, count=1)
    text = re.sub(r"(?m)^(\s*score_threshold:\s*)[-\d.]+", rf"\g<1>{_number(suggestion.threshold)}", text, count=1)
    return re.sub(r"(?m)^(\s*min_fit_score:\s*)[-\d.]+", rf"\g<1>{_number(suggestion.min_fit)}", text, count=1)


def _rewrite_rule_line(line: str, item: RuleSuggestion) -> str:
    if item.points is None or item.rule.disqualify:
        return line
    line = re.sub(r"(\bpoints:\s*)-?[\d.]+", rf"\g<1>{_number(item.points)}", line, count=1)
    if item.rule.cap is not None:  # the cap stays the same number of units
        cap = item.points * item.rule.cap / item.rule.points
        line = re.sub(r"(\bcap:\s*)-?[\d.]+", rf"\g<1>{_number(round(cap))}", line, count=1)
    return line


def _comment(item: RuleSuggestion) -> str:
    was = f"was {_number(item.rule.points)}"
    fired = f"fired on {item.share_fired:.1%} of snapshots"
    if item.coefficient is None:
        return f"suggest: {item.note}; {was}; {fired}"
    return f"suggest: {item.note} ({item.coefficient:+.3f} log-odds per unit); {was}; {fired}"


# -- the command line ---------------------------------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="funnel.suggested.yml",
                        help="where to write the candidate (default: %(default)s; never config/funnel.yml)")
    parser.add_argument("--horizon-days", type=int, default=60,
                        help="an opportunity within this many days of a snapshot is the outcome (default: 60)")
    parser.add_argument("--version", help="the candidate's version (default: <current>-suggested)")


def run(args: argparse.Namespace, *, out: Callable[[str], None] = print) -> int:
    target = Path(args.out).resolve()
    if target == settings.FUNNEL_DEFINITION.resolve():
        raise SystemExit("handoff: error: suggest never writes config/funnel.yml itself: give --out another file")
    result = suggest(args.horizon_days)
    version = args.version or f"{result.current.version}-suggested"
    target.write_text(candidate_text(result, version), encoding="utf-8")
    load(target)  # the candidate is a valid definition, or this says why
    out(f"{len(result.rules)} rules from {result.snapshots} snapshots ({result.positives} reached an opportunity "
        f"within {result.horizon_days} days); MQL threshold {_number(result.current.mql_score_threshold)} -> "
        f"{_number(result.threshold)}, minimum fit {_number(result.current.mql_min_fit_score)} -> "
        f"{_number(result.min_fit)}")
    for d, n, auc, cur in result.folds:
        out(f"  checked on {n} snapshots from {d}: AUC {auc:.3f} (the current points: {cur:.3f})")
    for item in result.rules:
        new = "-" if item.points is None else _number(item.points)
        out(f"  {item.rule.rule_id:<22} {_number(item.rule.points):>5} -> {new:>5}  {item.note}")
    out(f"wrote {target} (version {version}); next: handoff funnel backtest {args.out}")
    return 0
