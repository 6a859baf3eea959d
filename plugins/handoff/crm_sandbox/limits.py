"""Rate limiting (HubSpot's rolling ten-second and daily policies), fault injection and
request statistics. All time comes from an injectable clock (epoch seconds)."""

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
    """Per-token rolling window plus a daily count (UTC day), as HubSpot's private-app limits."""

    def __init__(self, limit: tuple[int, float] | None, daily: int | None, clock: Callable[[], float]) -> None:
        self.limit = limit
        self.daily = daily
        self.clock = clock
        self._windows: dict[str, deque[float]] = {}
        self._days: dict[str, tuple[str, int]] = {}
        self._lock = threading.Lock()

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
                    decision = RateDecision(False, headers, "TEN_SECONDLY_ROLLING", max(1, math.ceil(retry)))
                if decision.allowed:
                    window.append(now)
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
