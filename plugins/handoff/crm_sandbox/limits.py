"""HubSpot's limits as the sandbox enforces them (`LIMITS`, one table to hold against HubSpot's documentation),
rate limiting (the rolling ten-second, daily and search per-second policies), fault injection and request
statistics. All time comes from an injectable clock (epoch seconds)."""

from __future__ import annotations

import math
import random
import re
import threading
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from datetime import UTC, datetime
from typing import Any

# --------------------------------------------------------------------------- the limits, in one table

USAGE_DOC = "https://developers.hubspot.com/docs/guides/apps/api-usage/usage-details"
SEARCH_DOC = "https://developers.hubspot.com/docs/api-reference/search/guide#limitations"
OBJECTS_DOC = "https://developers.hubspot.com/docs/guides/api/crm/understanding-the-crm"
CONTACTS_DOC = "https://developers.hubspot.com/docs/guides/api/crm/objects/contacts"
ASSOCIATIONS_DOC = "https://developers.hubspot.com/changelog/batch-read-limit-for-hubspot-associations-api"
OWNERS_DOC = "https://developers.hubspot.com/docs/guides/api/crm/owners"


@dataclass(frozen=True)
class Limit:
    """One HubSpot limit: its value, what it bounds, what the sandbox answers beyond it, where HubSpot says so."""

    value: int
    bounds: str
    beyond: str
    source: str


LIMITS: dict[str, Limit] = {
    "requests_per_10s": Limit(
        100, "API requests per token in any rolling 10 s (private app, Free/Starter)",
        "429 RATE_LIMIT, policyName TEN_SECONDLY_ROLLING, Retry-After", USAGE_DOC),
    "requests_per_day": Limit(
        250_000, "API requests per token per UTC day (private app, Free/Starter)",
        "429 RATE_LIMIT, policyName DAILY", USAGE_DOC),
    "search_requests_per_second": Limit(
        5, "search requests (POST .../search) per token in any rolling second, on top of the 10 s limit",
        "429 RATE_LIMIT, policyName SECONDLY, no Retry-After and no X-HubSpot-RateLimit headers", SEARCH_DOC),
    "search_page": Limit(200, "search `limit` (results per page)", "400 VALIDATION_ERROR", SEARCH_DOC),
    "search_results_per_query": Limit(
        10_000, "results one search query can page through (`after`)", "400 VALIDATION_ERROR", SEARCH_DOC),
    "search_filter_groups": Limit(5, "filterGroups per search", "400 VALIDATION_ERROR", SEARCH_DOC),
    "search_filters_per_group": Limit(6, "filters per filter group", "400 VALIDATION_ERROR", SEARCH_DOC),
    "search_filters_total": Limit(18, "filters across all groups", "400 VALIDATION_ERROR", SEARCH_DOC),
    "batch_inputs": Limit(
        100, "inputs per batch read/create/update/archive", "400 VALIDATION_ERROR, nothing done", OBJECTS_DOC),
    "batch_read_inputs_with_history": Limit(
        50, "inputs per batch read that asks for propertiesWithHistory", "400 VALIDATION_ERROR", CONTACTS_DOC),
    "list_page": Limit(100, "list endpoint `limit`", "400 VALIDATION_ERROR", OBJECTS_DOC),
    "list_page_with_history": Limit(
        50, "list endpoint page size when propertiesWithHistory is asked for", "the page is cut to 50",
        CONTACTS_DOC),
    "association_batch_read_inputs": Limit(
        1000, "inputs per associations batch/read (v3 and v4, since 2025-02-10)", "400 VALIDATION_ERROR",
        ASSOCIATIONS_DOC),
    "owners_page": Limit(500, "owners list `limit`", "400 VALIDATION_ERROR", OWNERS_DOC),
}


def limit(name: str) -> int:
    return LIMITS[name].value



def parse_rate_limit(value: str | tuple[int, float] | None) -> tuple[int, float] | None:
    """`"100/10"` or `(100, 10)` -> (requests, window seconds); None or "off" disables limiting."""
    if value is None:
        return None
    if isinstance(value, str):
        if value.strip().lower() in ("off", "none", "0"):
            return None
        count, sep, seconds = value.partition("/")
        try:
            parsed = (int(count), float(seconds) if sep else 10.0)
        except ValueError:
            raise ValueError(f"rate limit must look like 100/10 (requests/seconds), got {value!r}") from None
    else:
        parsed = (int(value[0]), float(value[1]))
    if parsed[0] <= 0 or parsed[1] <= 0:
        raise ValueError(f"rate limit needs positive requests and seconds, got {value!r}")
    return parsed


@dataclass
class RateDecision:
    allowed: bool
    headers: dict[str, str]
    policy: str | None = None
    retry_after_s: int = 0


class RateLimiter:
    """Per-token rolling window plus a daily count (UTC day), as HubSpot's private-app limits.

    `policy` names the window in a 429 (TEN_SECONDLY_ROLLING; SECONDLY for search); `headers=False` leaves out
    the X-HubSpot-RateLimit-* headers (HubSpot sends none for the search policy)."""

    def __init__(self, limit: tuple[int, float] | None, daily: int | None, clock: Callable[[], float], *,
                 policy: str = "TEN_SECONDLY_ROLLING", headers: bool = True) -> None:
        self.limit = limit
        self.daily = daily
        self.clock = clock
        self.policy = policy
        self.send_headers = headers
        self._windows: dict[str, deque[float]] = {}
        self._days: dict[str, tuple[str, int]] = {}
        self._lock = threading.Lock()
        self.refused = 0  # requests answered 429 by this limiter (tests read it)

    def check(self, token: str) -> RateDecision:
        now = self.clock()
        day = datetime.fromtimestamp(now, tz=UTC).date().isoformat()
        with self._lock:
            headers: dict[str, str] = {}
            decision = RateDecision(True, headers)
            used_day = self._days.get(token, (day, 0))
            used_today = used_day[1] if used_day[0] == day else 0
            if self.daily is not None:
                if used_today >= self.daily:
                    tomorrow = (math.floor(now / 86400) + 1) * 86400
                    decision = RateDecision(False, headers, "DAILY", max(1, math.ceil(tomorrow - now)))
            if self.limit is not None:
                max_requests, window_s = self.limit
                window = self._windows.setdefault(token, deque())
                while window and window[0] <= now - window_s:
                    window.popleft()
                if decision.allowed and len(window) >= max_requests:
                    retry = window[0] + window_s - now
                    decision = RateDecision(False, headers, self.policy, max(1, math.ceil(retry)))
                if decision.allowed:
                    window.append(now)
                if self.send_headers:
                    headers["X-HubSpot-RateLimit-Max"] = str(max_requests)
                    headers["X-HubSpot-RateLimit-Remaining"] = str(max(0, max_requests - len(window)))
                    headers["X-HubSpot-RateLimit-Interval-Milliseconds"] = str(int(window_s * 1000))
            if decision.allowed:
                used_today += 1
            self._days[token] = (day, used_today)
            if self.daily is not None:
                headers["X-HubSpot-RateLimit-Daily"] = str(self.daily)
                headers["X-HubSpot-RateLimit-Daily-Remaining"] = str(max(0, self.daily - used_today))
            if not decision.allowed:
                self.refused += 1
            if not decision.allowed and self.send_headers:
                headers["Retry-After"] = str(decision.retry_after_s)
            return decision


@dataclass
class Faults:
    """Fault-injection knobs. Probabilities are per API request (row_error_rate per batch row).

    Decisions are drawn from `random.Random(f"{seed}:{n}")` for the n-th API request since the
    knobs were last set, so the same knobs and the same request sequence give the same faults.
    """

    seed: int = 0
    rate_limit_storm: float = 0.0      # probability a request starts a 429 storm
    storm_length: int = 3              # consecutive requests answered 429 once a storm starts
    server_error: float = 0.0          # probability of a 503
    timeout: float = 0.0               # probability the server holds the request for timeout_seconds
    timeout_seconds: float = 30.0
    timeout_mode: str = "drop"         # after the hold: "drop" closes the connection without processing;
    #                                    "late" processes and answers; "lost" processes, then drops the answer
    slow: float = 0.0                  # probability of added latency
    slow_ms: float = 0.0               # latency added to a slow request
    row_error_rate: float = 0.0        # fraction of batch rows failing with VALIDATION_ERROR
    down: bool = False                 # every API request answered 503

    def __post_init__(self) -> None:
        for name in ("rate_limit_storm", "server_error", "timeout", "slow", "row_error_rate"):
            value = float(getattr(self, name))
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"fault {name} must be a probability between 0 and 1, got {value}")
            setattr(self, name, value)
        if self.timeout_mode not in ("drop", "late", "lost"):
            raise ValueError(f"fault timeout_mode must be 'drop', 'late' or 'lost', got {self.timeout_mode!r}")
        if int(self.storm_length) < 1:
            raise ValueError(f"fault storm_length must be at least 1, got {self.storm_length}")
        self.seed = int(self.seed)
        self.storm_length = int(self.storm_length)
        self.timeout_seconds = float(self.timeout_seconds)
        self.slow_ms = float(self.slow_ms)
        self.down = bool(self.down)

    @classmethod
    def from_dict(cls, values: dict[str, Any], base: Faults | None = None) -> Faults:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown fault knob(s): {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        merged = asdict(base) if base else {}
        merged.update(values)
        return cls(**merged)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class FaultDecision:
    kind: str | None          # None, "down", "rate_limit", "server_error", "timeout"
    latency_s: float
    rng: random.Random        # for per-row decisions within this request


class FaultInjector:
    def __init__(self, faults: Faults | None = None) -> None:
        self._lock = threading.Lock()
        self.configure(faults or Faults())

    def configure(self, faults: Faults) -> None:
        with self._lock:
            self.faults = faults
            self._n = 0
            self._storm_left = 0

    def decide(self) -> FaultDecision:
        with self._lock:
            f = self.faults
            n = self._n
            self._n += 1
            rng = random.Random(f"{f.seed}:{n}")
            draws = [rng.random() for _ in range(4)]
            latency = f.slow_ms / 1000 if f.slow_ms and draws[3] < f.slow else 0.0
            if f.down:
                return FaultDecision("down", 0.0, rng)
            if self._storm_left > 0:
                self._storm_left -= 1
                return FaultDecision("rate_limit", latency, rng)
            if draws[0] < f.rate_limit_storm:
                self._storm_left = f.storm_length - 1
                return FaultDecision("rate_limit", latency, rng)
            if draws[1] < f.server_error:
                return FaultDecision("server_error", latency, rng)
            if draws[2] < f.timeout:
                return FaultDecision("timeout", latency, rng)
            return FaultDecision(None, latency, rng)


_ID_SEGMENT = re.compile(r"/\d+(?=/|$)")


class Stats:
    """Request counts by `METHOD /path` (numeric ids folded to {id}) and status."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[tuple[str, int]] = Counter()

    def record(self, method: str, path: str, status: int) -> None:
        key = f"{method} {_ID_SEGMENT.sub('/{id}', path.rstrip('/') or '/')}"
        with self._lock:
            self._counts[(key, status)] += 1

    def reset(self) -> None:
        with self._lock:
            self._counts.clear()

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            items = list(self._counts.items())
        by_path: dict[str, dict[str, int]] = {}
        by_status: Counter[str] = Counter()
        for (key, status), count in sorted(items):
            by_path.setdefault(key, {})[str(status)] = count
            by_status[str(status)] += count
        return {"total": sum(by_status.values()), "by_status": dict(sorted(by_status.items())),
                "by_path": by_path}
