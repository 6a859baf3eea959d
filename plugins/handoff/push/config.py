"""The push's knobs: the follow-up SLA (from the funnel definition) and the retry/parking policy."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from handoff import funnel, settings

# Stages the push never moves a contact back from (HubSpot's lifecycle order, after salesqualifiedlead).
NO_DOWNGRADE_STAGES = frozenset({"opportunity", "customer", "evangelist"})
SQL_STAGE = "salesqualifiedlead"
TASK_TO_CONTACT_ASSOCIATION = 204  # HUBSPOT_DEFINED task -> contact
BATCH_LIMIT = 100  # HubSpot's batch read/update/create and IN-filter maximum


@dataclass(frozen=True)
class PushConfig:
    sla_hours: float = 24.0          # sla.sql_follow_up_hours: task due = sql_at + this
    max_attempts: int = 5            # write attempts per row and action, across runs, before the row is parked
    rounds: int = 3                  # passes over still-retryable rows within one run
    batch_size: int = BATCH_LIMIT    # rows per batch call (≤ 100)
    lock_timeout_s: float = 60.0     # wait this long for a concurrent push (same warehouse) to finish
    readback: bool = True            # read back what was written and log mismatches

    def __post_init__(self) -> None:
        if not 1 <= self.batch_size <= BATCH_LIMIT:
            raise ValueError(f"push batch_size must be between 1 and {BATCH_LIMIT}, got {self.batch_size}")
        if self.max_attempts < 1 or self.rounds < 1:
            raise ValueError(f"push max_attempts and rounds must be ≥ 1, got {self.max_attempts}, {self.rounds}")
        if self.sla_hours <= 0:
            raise ValueError(f"sla.sql_follow_up_hours must be positive, got {self.sla_hours}")


def sla_hours(path: str | Path | None = None) -> float:
    """``sla.sql_follow_up_hours`` from the funnel definition (config/funnel.yml), read and validated by
    ``handoff.funnel`` (an invalid file raises ``FunnelDefinitionError``, a ``ValueError``, naming the file,
    the line and the key)."""
    return float(funnel.load(path or settings.FUNNEL_DEFINITION).sql_follow_up_hours)


def load(funnel_path: str | Path | None = None) -> PushConfig:
    """The config a run uses: SLA from the funnel definition; ``HANDOFF_PUSH_MAX_ATTEMPTS`` overrides the
    parking threshold."""
    raw = os.environ.get("HANDOFF_PUSH_MAX_ATTEMPTS")
    try:
        max_attempts = int(raw) if raw else PushConfig.max_attempts
    except ValueError:
        raise ValueError(f"HANDOFF_PUSH_MAX_ATTEMPTS must be an integer, got {raw!r}") from None
    return PushConfig(sla_hours=sla_hours(funnel_path), max_attempts=max_attempts)
