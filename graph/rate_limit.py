"""Per-subject token buckets for mutations: one token cannot flood the write path.

In memory, per process: with N API replicas a subject gets up to N times the rate. That
bounds a runaway client, which is the point; an exact global quota would need shared state
(a database row or Redis) on every mutation.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable

MAX_SUBJECTS = 100_000  # buckets kept; the least recently used is dropped (it was refilling)


class RateLimiter:
    def __init__(
        self,
        rate: float,
        burst: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_subjects: int = MAX_SUBJECTS,
    ) -> None:
        """``rate`` tokens a second, up to ``burst`` saved; rate 0 turns the limit off."""
        self.rate = rate
        self.burst = max(burst, 1)
        self._clock = clock
        self._max_subjects = max_subjects
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # tokens, when

    def take(self, subject: str) -> float | None:
        """Spend one token: None if there was one, else the seconds until there is."""
        if self.rate <= 0:
            return None
        now = self._clock()
        tokens, then = self._buckets.pop(subject, (float(self.burst), now))
        tokens = min(self.burst, tokens + (now - then) * self.rate)
        if tokens >= 1:
            tokens -= 1
            wait = None
        else:
            wait = (1 - tokens) / self.rate
        self._buckets[subject] = (tokens, now)
        if len(self._buckets) > self._max_subjects:
            self._buckets.popitem(last=False)
        return wait
