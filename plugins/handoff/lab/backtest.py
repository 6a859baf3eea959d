"""``handoff funnel backtest CANDIDATE.yml [--since DATE] [--until DATE]``: the candidate definition on history.

How (docs/funnel.md "Changing the definition safely"):

1. the candidate is loaded and validated by the one funnel model (``handoff.funnel``), as ``handoff funnel check``
   would;
2. a copy of the dbt project gets the candidate's seeds; the seeds that differ from the current definition's, with
   the funnel rules and settings always, and every model downstream of them (found in the manifest) are rebuilt
   whole (``--full-refresh``) into the schema ``backtest`` (var ``backtest``: ``generate_schema_name`` routes those
   nodes there), reading every other model (events, features, the CRM's record) from production. The dense daily
   tables are point in time, so a day's candidate score sees only that day's and earlier data, as the production
   score did. The models' change logs in production are read, never moved (``changes_applied``);
3. in the same ``dbt build``, ``marts.funnel_backtest`` is rebuilt from the production marts (current) and the
   backtest schema (candidate); it is printed side by side with the differences between the two definitions.

Nothing in staging, intermediate or marts changes but ``marts.funnel_backtest``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from datetime import date
from pathlib import Path

from handoff import dbt_runner, settings
from handoff.funnel import Definition, load, seed_contents

SCHEMA = "backtest"
LOCK_KEY = "handoff.backtest"  # one backtest at a time per warehouse (pg advisory lock on hashtext of this)
# always rebuilt: the scoring and staging chain, even when only a threshold changed (or nothing: the backtest of
# the current definition then equals production, which the tests check)
ALWAYS_REBUILT = ("funnel_rules", "funnel_settings")
COLUMNS = ("definition", "definition_version", "cohort_period", "mqls", "mqls_flagged", "mqls_added", "mqls_dropped",
           "sqls_within_lag", "sqls_by_rules_within_lag", "opportunities_within_lag", "customers_within_lag",
           "flagged_reaching_opportunity", "mql_precision", "opportunities_opened", "opportunities_flagged_before",
           "opportunity_coverage", "median_days_mql_to_opportunity", "mql_goal", "mqls_vs_goal", "is_complete")


@dataclass(frozen=True)
class BacktestResult:
    candidate: Definition
    current: Definition
    rebuilt: tuple[str, ...]  # the seeds and models rebuilt in the backtest schema
    rows: tuple[dict, ...]  # marts.funnel_backtest, both definitions


def changed_seeds(candidate: Definition, current: Definition) -> list[str]:
    """The funnel seeds whose content differs between the two definitions, plus the rules and settings always."""
    new, old = seed_contents(candidate), seed_contents(current)
    changed = {name.removesuffix(".csv") for name in new if new[name] != old.get(name)}
    return sorted(changed | set(ALWAYS_REBUILT))


def _project_copy(workdir: Path, candidate: Definition) -> Path:
    """The dbt project with the candidate's seeds: the same models and macros, its own target folder."""
    project = workdir / "dbt_project"
    shutil.copytree(dbt_runner.PROJECT, project, ignore=shutil.ignore_patterns("target", "logs", "dbt_packages"))
    for name, text in seed_contents(candidate).items():
        (project / "seeds" / name).write_text(text, encoding="utf-8")
    return project


def rebuilt_nodes(manifest: dict, seeds: Sequence[str]) -> list[str]:
    """The seeds and models downstream of ``seeds`` (by name), the definition lab's own mart left out."""
    todo = [f"seed.{manifest['metadata'].get('project_name', 'handoff')}.{seed}" for seed in seeds]
    seen: set[str] = set()
    while todo:
        unique_id = todo.pop()
        if unique_id not in seen:
            seen.add(unique_id)
            todo.extend(manifest["child_map"].get(unique_id, []))
    nodes = [manifest["nodes"][uid] for uid in seen if uid in manifest["nodes"]]
    return sorted(node["name"] for node in nodes if node["resource_type"] in ("model", "seed")
                  and "definition_lab" not in node.get("tags", []))


def backtest(candidate_path: str | Path, *, since: date | None = None, until: date | None = None,
             dbname: str | None = None, log: Callable[[str], None] = print) -> BacktestResult:
    """Rebuild the candidate's models in the backtest schema and marts.funnel_backtest; return its rows."""
    candidate = load(candidate_path)
    current = load(settings.FUNNEL_DEFINITION)
    env = {**dbt_runner.interval_env(None, None), **({"HANDOFF_DBT_DBNAME": dbname} if dbname else {})}
    seeds = changed_seeds(candidate, current)
    with _one_at_a_time(dbname), tempfile.TemporaryDirectory(prefix="handoff-backtest-") as tmp:
        project = _project_copy(Path(tmp), candidate)

        def dbt(*args: str) -> None:
            dbt_runner.run(["--quiet", *args], quiet=True, env=env, project_dir=project)

        # the graph does not depend on the seeds' content: the project's own manifest when current, else a parse
        manifest_path = dbt_runner.MANIFEST
        if not dbt_runner.manifest_is_fresh():
            dbt("parse")
            manifest_path = project / "target" / "manifest.json"
        nodes = rebuilt_nodes(json.loads(manifest_path.read_text(encoding="utf-8")), seeds)
        log(f"backtest: {candidate.version} ({candidate_path}) against {current.version}: rebuilding "
            f"{len(nodes)} seeds and models in schema {SCHEMA} ({', '.join(seeds)} changed or always rebuilt)")
        routing = {"schema": SCHEMA, "nodes": nodes, "since": since.isoformat() if since else None,
                   "until": until.isoformat() if until else None}
        dbt("build", "--full-refresh", "--resource-type", "seed", "--resource-type", "model",
            "--vars", json.dumps({"backtest": routing}), "--select", *nodes, "funnel_backtest")
    return BacktestResult(candidate, current, tuple(nodes), tuple(read_rows(dbname)))


def connect(dbname: str | None = None, *, autocommit: bool = False):
    """The lab's connection: the transformer role (it reads intermediate and writes the backtest schema), on the
    warehouse's database or ``dbname`` (the tests' own)."""
    from handoff import warehouse  # noqa: PLC0415

    tgt = warehouse.target()
    return warehouse.open_connection(tgt.conninfo("transformer", dbname=dbname or tgt.dbname), autocommit=autocommit)


@contextlib.contextmanager
def _one_at_a_time(dbname: str | None):
    """One backtest at a time per warehouse (they share the schema): a session advisory lock, held while it runs."""
    with connect(dbname, autocommit=True) as conn:
        if not conn.execute("select pg_try_advisory_lock(hashtext(%s))", [LOCK_KEY]).fetchone()[0]:
            raise BacktestBusy("another backtest is running on this warehouse (they share the schema backtest): "
                               "wait for it to finish and run again")
        try:
            yield
        finally:
            conn.execute("select pg_advisory_unlock(hashtext(%s))", [LOCK_KEY])


class BacktestBusy(RuntimeError):
    """Another backtest holds the warehouse's backtest schema."""


def read_rows(dbname: str | None = None) -> list[dict]:
    from psycopg.rows import dict_row  # noqa: PLC0415

    with connect(dbname) as conn, conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(f"select {', '.join(COLUMNS)} from marts.funnel_backtest "  # noqa: S608 - fixed names
                           "order by cohort_period, definition desc").fetchall()


# -- the report ---------------------------------------------------------------------------------------------------
def definition_differences(current: Definition, candidate: Definition) -> list[str]:
    """What the candidate changes, one line each: settings, then rules added, removed or changed."""
    lines = []
    skip = {"version", "name", "rules", "source"}
    for f in fields(Definition):
        if f.name in skip:
            continue
        old, new = getattr(current, f.name), getattr(candidate, f.name)
        if old != new:
            lines.append(f"{f.name}: {old} -> {new}")
    old_rules = {r.rule_id: r for r in current.rules}
    new_rules = {r.rule_id: r for r in candidate.rules}
    for rule_id in sorted(new_rules.keys() - old_rules.keys()):
        lines.append(f"rule {rule_id}: added ({new_rules[rule_id].points:+g} points)")
    for rule_id in sorted(old_rules.keys() - new_rules.keys()):
        lines.append(f"rule {rule_id}: removed")
    for rule_id in sorted(old_rules.keys() & new_rules.keys()):
        old, new = old_rules[rule_id], new_rules[rule_id]
        changes = [f"{f.name} {getattr(old, f.name)} -> {getattr(new, f.name)}" for f in fields(old)
                   if f.name != "line" and getattr(old, f.name) != getattr(new, f.name)]
        if changes:
            lines.append(f"rule {rule_id}: {', '.join(changes)}")
    return lines


def _ratio(num: int, den: int) -> str:
    return f"{num / den:.2f}" if den else "-"


def _shown(value: object) -> str:
    if value is None:
        return "-"
    return str(value) if isinstance(value, int) else f"{value:.2f}"


def _pair(old: object, new: object) -> str:
    return f"{_shown(old)} -> {_shown(new)}"


def report_lines(result: BacktestResult) -> list[str]:
    """The two definitions side by side, cohort by cohort, and pooled over the complete cohorts."""
    by_period: dict[date, dict[str, dict]] = {}
    for row in result.rows:
        by_period.setdefault(row["cohort_period"], {})[row["definition"]] = row
    cur_v, cand_v = result.current.version, result.candidate.version
    lines = [f"definition {cur_v} (current) -> {cand_v} (candidate)"]
    diffs = definition_differences(result.current, result.candidate)
    lines += [f"  {d}" for d in diffs] or ["  (no difference in the rules or settings)"]
    header = (f"{'cohort':<10}  {'MQLs':>12}  {'flagged':>12}  {'added':>5}  {'dropped':>7}  {'precision':>12}  "
              f"{'coverage':>12}  {'days MQL->opp':>14}  {'SQLs by rules':>13}  {'MQLs/goal':>12}  complete")
    lines += ["", header, "-" * len(header)]
    empty = dict.fromkeys(COLUMNS, 0) | {"mql_precision": None, "opportunity_coverage": None,
                                         "median_days_mql_to_opportunity": None}
    totals = {d: dict.fromkeys(("flagged", "reached", "opened", "covered", "mqls"), 0)
              for d in ("current", "candidate")}
    for period in sorted(by_period):
        cur = by_period[period].get("current", empty)
        cand = by_period[period].get("candidate", empty)
        complete = cur["is_complete"] or cand["is_complete"]
        lines.append(
            f"{period.isoformat():<10}  {_pair(cur['mqls'], cand['mqls']):>12}  "
            f"{_pair(cur['mqls_flagged'], cand['mqls_flagged']):>12}  {cand['mqls_added']:>5}  "
            f"{cand['mqls_dropped']:>7}  {_pair(cur['mql_precision'], cand['mql_precision']):>12}  "
            f"{_pair(cur['opportunity_coverage'], cand['opportunity_coverage']):>12}  "
            f"{_pair(cur['median_days_mql_to_opportunity'], cand['median_days_mql_to_opportunity']):>14}  "
            f"{_pair(cur['sqls_by_rules_within_lag'], cand['sqls_by_rules_within_lag']):>13}  "
            f"{_pair(cur['mqls_vs_goal'], cand['mqls_vs_goal']):>12}  "
            f"{'yes' if complete else 'no'}")
        if complete:
            for name, row in (("current", cur), ("candidate", cand)):
                t = totals[name]
                t["mqls"] += row["mqls"]
                t["flagged"] += row["mqls_flagged"]
                t["reached"] += row["flagged_reaching_opportunity"]
                t["opened"] += row["opportunities_opened"]
                t["covered"] += row["opportunities_flagged_before"]
    cur, cand = totals["current"], totals["candidate"]
    lines += ["", "complete cohorts, pooled:",
              f"  MQLs {cur['mqls']} -> {cand['mqls']} (flagged by the definition {cur['flagged']} -> "
              f"{cand['flagged']}); precision (flagged MQLs reaching an opportunity within the "
              f"lag) {_ratio(cur['reached'], cur['flagged'])} -> {_ratio(cand['reached'], cand['flagged'])}; "
              f"coverage (opportunities flagged MQL before) {_ratio(cur['covered'], cur['opened'])} -> "
              f"{_ratio(cand['covered'], cand['opened'])}",
              f"  rows: marts.funnel_backtest; the candidate's stages and scores: schema {SCHEMA} "
              f"(e.g. {SCHEMA}.fct_stage_transitions)"]
    return lines


# -- the command line ---------------------------------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("candidate", help="the candidate definition (a funnel.yml with its own version)")
    parser.add_argument("--since", type=date.fromisoformat, metavar="DATE",
                        help="report cohorts from the period of this day on (YYYY-MM-DD)")
    parser.add_argument("--until", type=date.fromisoformat, metavar="DATE",
                        help="report cohorts that start on or before this day (YYYY-MM-DD)")


def run(args: argparse.Namespace, *, out: Callable[[str], None] = print) -> int:
    try:
        result = backtest(args.candidate, since=args.since, until=args.until,
                          log=lambda msg: print(f"[handoff] {msg}", flush=True))
    except BacktestBusy as exc:
        raise SystemExit(f"handoff: error: {exc}") from None
    for line in report_lines(result):
        out(line)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="handoff funnel backtest", description=__doc__.split("\n")[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))
