"""The inputs the sample follows: the funnel definition (config/funnel.yml) and the content catalog seed.

The generator reads both files instead of repeating their lists, so a marketer's change to the funnel (a new
competitor domain, another threshold) shows up in the next sample.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from handoff import funnel, settings
from handoff.funnel import Definition as Funnel

__all__ = ["CATALOG_PATH", "FUNNEL_PATH", "CatalogEntry", "Funnel", "load_catalog", "load_funnel"]

REPO_ROOT = Path(__file__).resolve().parents[3]
FUNNEL_PATH = settings.FUNNEL_DEFINITION
CATALOG_PATH = REPO_ROOT / "dbt_project" / "seeds" / "content_catalog.csv"


def load_funnel(path: Path = FUNNEL_PATH) -> Funnel:
    """The funnel definition, read and validated by ``handoff.funnel`` (the one reading of config/funnel.yml);
    an invalid or missing file raises ``FunnelDefinitionError`` naming the file, the line and the rule."""
    return funnel.load(path)


@dataclass(frozen=True)
class CatalogEntry:
    path: str
    content_type: str
    buying_stage: str  # '' for pages outside the buying journey (careers)
    title: str


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
