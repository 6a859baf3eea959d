"""``handoff funnel check|compile [--definition PATH] [--seeds-dir DIR]``: validate the definition (and that the
seeds are in sync with it) or write the dbt seeds."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from handoff import settings
from handoff.funnel.loading import load
from handoff.funnel.model import FunnelDefinitionError
from handoff.funnel.seeds import compile, out_of_sync  # noqa: A004 - the CLI verb


def add_arguments(parser: argparse.ArgumentParser) -> argparse._SubParsersAction:
    """``check`` and ``compile``; returns the actions so the ``handoff`` CLI can add the definition lab's
    (``handoff funnel backtest``, ``handoff.lab``), which needs the warehouse and dbt this package does not."""
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    for name, text in (("check", "validate the definition (and that the seeds are in sync)"),
                       ("compile", "write the dbt seeds")):
        action = actions.add_parser(name, help=text, description=text)
        action.add_argument("--definition", default=str(settings.FUNNEL_DEFINITION),
                            help="the funnel definition YAML (default: %(default)s)")
        action.add_argument("--seeds-dir", default=str(settings.DBT_PROJECT_DIR / "seeds"),
                            help="where the dbt seeds live (default: %(default)s)")
    return actions


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

