"""A per-key rate limit in bounded memory: ``limit`` events per ``window`` seconds.

It is a GCRA (a token bucket kept as one number per key, the time at which the key's
bucket is full again): a key may spend ``limit`` at once, then one every
``window / limit`` seconds. A key whose bucket is full again is forgotten, so the
table only holds keys seen within the last window, and never more than ``max_keys``
(past that the oldest entries go first: a client with that many addresses is beyond
what a per-address limit can stop anyway).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable


class KeyedRateLimit:
    def __init__(
        self,
        limit: int,
        window: float,
        *,
        max_keys: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if limit < 1 or window <= 0:
            raise ValueError("limit must be >= 1 and window > 0")
        self._interval = window / limit
        self._tolerance = window - self._interval
        self._max_keys = max_keys
        self._clock = clock
        self._full_at: dict[str, float] = {}
        self._sweep_at = clock() + window

    def __len__(self) -> int:
        return len(self._full_at)

    def retry_after(self, key: str) -> float:
        """Seconds until ``key`` may spend one more; 0 when it may now."""
        now = self._clock()
        full_at = self._full_at.get(key, now)
        return max(0.0, full_at - self._tolerance - now)

    def peek(self, key: str) -> int:
        """0 when ``key`` may spend one now, else whole seconds to wait (``Retry-After``)."""
        wait = self.retry_after(key)
        return 0 if wait <= 1e-6 else max(1, math.ceil(wait))  # 1e-6: float sums

    def take(self, key: str) -> int:
        """Spend one for ``key``: 0 when allowed, else whole seconds to wait (nothing spent)."""
        wait = self.peek(key)
        if wait:
            return wait
        now = self._clock()
        self._sweep(now)
        full_at = max(self._full_at.pop(key, now), now) + self._interval
        self._full_at[key] = full_at  # re-inserted: the dict stays in order of last use
        if len(self._full_at) > self._max_keys:
            del self._full_at[next(iter(self._full_at))]
        return 0

    def _sweep(self, now: float) -> None:
        """Forget keys whose bucket is full again (at most once per window)."""
        if now < self._sweep_at:
            return
        self._sweep_at = now + self._tolerance + self._interval
        for key in [k for k, full_at in self._full_at.items() if full_at <= now]:
            del self._full_at[key]
