"""The client side of HubSpot's rate limits: a sliding-window limiter that every request of the process goes through."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable


class RateLimiter:
    """At most ``rate`` requests in any ``per`` seconds: HubSpot's rolling window (100 per 10 s), shared by every
    request the client sends. Thread-safe.

    A sliding window, not a token bucket: a bucket of capacity N refilled at N/window lets up to 2N through in the
    first window, which a rolling window answers with 429s. ``pause(seconds)`` (the server said 429) makes every
    thread sharing the limiter wait, not just the one that was refused.
    """

    def __init__(self, rate: int = 100, per: float = 10.0, *, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        if rate <= 0 or per <= 0:
            raise ValueError(f"rate limiter needs rate > 0 and per > 0, got {rate}/{per}s")
        self.rate = rate
        # a little slack: the server stamps a request when it arrives, which may be later than we sent it
        self.per = per + min(0.05, per * 0.01)
        self._clock, self._sleep = clock, sleep
        self._sent: deque[float] = deque()
        self._blocked_until = 0.0
        self._lock = threading.Lock()

    def acquire(self) -> float:
        """Wait for a send slot and take it; returns the seconds waited."""
        waited = 0.0
        while True:
            with self._lock:
                now = self._clock()
                while self._sent and self._sent[0] <= now - self.per:
                    self._sent.popleft()
                wait = max(self._blocked_until - now,
                           self._sent[0] + self.per - now if len(self._sent) >= self.rate else 0.0)
                if wait <= 0:
                    self._sent.append(now)
                    return waited
                # at least 1 ms: a wait so small the clock cannot advance by it would spin forever
                wait = max(wait, 0.001)
            self._sleep(wait)
            waited += wait

    def pause(self, seconds: float) -> None:
        with self._lock:
            self._blocked_until = max(self._blocked_until, self._clock() + seconds)
