"""The rate-limit floor: the fewest seconds a push of N SQLs can take when every request counts against the
CRM's rolling limit (HubSpot: 100 requests per 10 s per private app)."""

from __future__ import annotations

import math

from handoff.push.config import BATCH_LIMIT


def requests_needed(n_sqls: int, *, in_doubt: int = 0, readback: bool = True, batch: int = BATCH_LIMIT) -> int:
    """Requests a push of ``n_sqls`` new SQLs needs with no errors: per batch of 100, one lifecycle read, one
    contact update, one task create, plus a contact and a task read-back; one task search per 100 rows whose
    earlier attempt has no known outcome."""
    if n_sqls < 0 or in_doubt < 0:
        raise ValueError("counts must be non-negative")
    per_batch = 3 + (2 if readback else 0)
    return per_batch * math.ceil(n_sqls / batch) + math.ceil(in_doubt / batch)


def floor_seconds(n_sqls: int, rate_limit: tuple[int, float] = (100, 10.0), **kwargs: object) -> float:
    """requests needed / sustained rate. (A rolling window lets the first ``max`` requests through at once, so a
    push under one window's worth can beat this; it is the floor for pushes that span many windows.)"""
    max_requests, window_s = rate_limit
    return requests_needed(n_sqls, **kwargs) / (max_requests / window_s)  # type: ignore[arg-type]
