"""``handoff.sample``: a deterministic, believable B2B sample company (CRM objects + Segment analytics exports).

    from handoff.sample import generate
    manifest = generate(Path(".local/sample"), seed=42, contacts=5000, days=180, end_date=date(2026, 11, 30))

The output layout is the contract in docs/data-contracts.md ("Sample output"); ground_truth.json and
ground_truth_contacts.csv.gz say what was planted (channel propensities, MQL/SQL dates, sales-cycle lags).
"""

from __future__ import annotations

import argparse
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from handoff.sample.generate import MAX_EVENTS_PER_FILE, Manifest, generate

__all__ = ["MAX_EVENTS_PER_FILE", "Manifest", "add_arguments", "generate", "main"]


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {text!r}") from None


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1: {value}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``handoff sample`` options."""
    parser.add_argument("--out", type=Path, default=None,
                        help="output folder (default: the local sample folder, .local/sample or $HANDOFF_HOME/sample)")
    parser.add_argument("--seed", type=int, default=42, help="random seed; the same seed gives the same bytes")
    parser.add_argument("--contacts", type=_positive, default=5000, help="number of CRM contacts (default 5000)")
    parser.add_argument("--days", type=_positive, default=180, help="days of history (default 180)")
    parser.add_argument("--end-date", type=_day, default=None,
                        help="last day of the window, YYYY-MM-DD (default: yesterday UTC)")
    parser.add_argument("--workers", type=_positive, default=None,
                        help="worker processes (default: the CPU count); the output does not depend on it")


def main(args: argparse.Namespace) -> int:
    """Run ``handoff sample`` with parsed arguments; prints the manifest's counts."""
    import sys  # noqa: PLC0415

    out = args.out
    if out is None:
        from handoff import settings  # noqa: PLC0415

        out = settings.paths().sample
    end = args.end_date or (datetime.now(UTC).date() - timedelta(days=1))

    def log(msg: str) -> None:
        print(f"[handoff sample] {msg}", file=sys.stderr, flush=True)

    manifest = generate(Path(out), seed=args.seed, contacts=args.contacts, days=args.days, end_date=end,
                        progress=log, workers=getattr(args, "workers", None))
    counts = manifest.counts
    print(f"{out}: {counts['contacts']:,} contacts, {counts['companies']:,} companies, {counts['deals']:,} deals, "
          f"{counts['events']:,} events ({manifest.start_date} .. {manifest.end_date})")
    return 0
