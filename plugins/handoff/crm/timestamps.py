"""The API's timestamps: ISO-8601 strings read as aware datetimes, and epoch milliseconds for search filters."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any


def epoch_ms(value: datetime) -> int:
    """Milliseconds since the epoch (a naive datetime is taken as UTC)."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return int(value.timestamp() * 1000)


def parse_timestamp(value: Any) -> datetime | None:
    """An ISO-8601 timestamp from the API as an aware datetime (no offset = UTC); None when absent or unreadable."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed


def parse_epoch_ms(value: Any) -> int | None:
    """``parse_timestamp`` in epoch milliseconds; None when absent or unreadable."""
    parsed = parse_timestamp(value)
    return None if parsed is None else epoch_ms(parsed)
