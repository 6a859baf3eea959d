"""Helpers for the sample generator's tests: the small sample's arguments and readers for its files."""

from __future__ import annotations

import gzip
import json
from datetime import date
from pathlib import Path

END = date(2026, 11, 30)
SMALL = {"contacts": 400, "days": 90, "end_date": END}


def read_jsonl_gz(path: Path) -> list[dict]:
    with gzip.open(path) as fh:
        return [json.loads(line) for line in fh]


def all_events(sample_dir: Path) -> list[tuple[str, dict]]:
    """(folder day, event) for every event of the sample."""
    out = []
    for f in sorted((sample_dir / "analytics").glob("*/*.jsonl.gz")):
        out += [(f.parent.name, e) for e in read_jsonl_gz(f)]
    return out
