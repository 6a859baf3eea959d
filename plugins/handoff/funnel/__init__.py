"""The funnel definition (config/funnel.yml): the marketing↔sales SLA as code, read in this package only.

- ``vocabulary``: the names the definition may use (features, attributes, kinds, segments, evidence);
- ``operators``: the rule operators' one Python meaning (``holds``), equal to their SQL meaning in dbt;
- ``model``: the typed, validated ``Definition`` (rules, settings, lists, bands) everything else reads;
- ``loading`` + ``validation``: ``load(path)``/``loads(text)``, errors naming the file, the line and the rule;
- ``seeds``: ``compile(definition, seeds_dir)``, the dbt seeds that carry the rules as data;
- ``cli``: ``handoff funnel check|compile`` (``main(argv)``).
"""

from __future__ import annotations

from handoff.funnel.cli import add_arguments, main, run
from handoff.funnel.loading import load, loads
from handoff.funnel.model import Definition, FunnelDefinitionError, Rule, SizeBand
from handoff.funnel.operators import LIST_OPERATORS, NUMERIC_OPERATORS, OPERATORS, TEXT_OPERATORS, holds
from handoff.funnel.seeds import compile, out_of_sync, seed_contents  # noqa: A004 - the CLI verb
from handoff.funnel.vocabulary import (
    BEHAVIOUR_FEATURES,
    COHORT_GRAINS,
    DERIVED_FEATURES,
    EVENT_TARGETS,
    EVIDENCE_CHOICES,
    EVIDENCE_STAGES,
    FIT_ATTRIBUTES,
    KINDS,
    RULE_STAGES,
    SEGMENTS,
)

__all__ = [
    "BEHAVIOUR_FEATURES", "COHORT_GRAINS", "DERIVED_FEATURES", "EVENT_TARGETS", "EVIDENCE_CHOICES",
    "EVIDENCE_STAGES", "FIT_ATTRIBUTES", "KINDS", "LIST_OPERATORS", "NUMERIC_OPERATORS", "OPERATORS", "RULE_STAGES",
    "SEGMENTS", "TEXT_OPERATORS", "Definition", "FunnelDefinitionError", "Rule", "SizeBand", "add_arguments",
    "compile", "holds", "load", "loads", "main", "out_of_sync", "run", "seed_contents",
]
