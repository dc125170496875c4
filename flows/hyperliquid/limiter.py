"""A weight budget per rolling minute, as Hyperliquid counts its REST limit (1200 per IP).

Every info request has a weight (20 for the calls used here, plus a little per item some of
them return). ``acquire(w)`` blocks until ``w`` more fits in the rolling window; ``charge``
records weight learned only after the answer (the items returned) without waiting, so that
the next acquisition waits for it. A sliding log rather than a token bucket: no burst can
exceed the budget, whichever way the server counts its minute.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable


class WeightLimiter:
    """At most ``budget`` weight in any rolling ``period_s`` (thread-safe)."""

    def __init__(
        self,
        budget: int,
        period_s: float = 60.0,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if budget < 1:
            raise ValueError("budget must be >= 1")
        self.budget = budget
        self.period_s = period_s
        self._clock = clock
        self._sleep = sleep
        self._spent: deque[tuple[float, int]] = deque()
        self._total = 0
        # Held while sleeping on purpose: waiters queue in arrival order.
        self._lock = threading.Lock()

    def _expire(self, now: float) -> None:
        while self._spent and self._spent[0][0] <= now - self.period_s:
            self._total -= self._spent.popleft()[1]

    @property
    def spent(self) -> int:
        """Weight sent within the current rolling window."""
        with self._lock:
            self._expire(self._clock())
            return self._total

    def acquire(self, weight: int) -> float:
        """Block until ``weight`` fits, record it; return the seconds waited.

        A weight above the whole budget waits for an empty window, then goes alone.
        """
        waited = 0.0
        with self._lock:
            while True:
                now = self._clock()
                self._expire(now)
                if self._total + weight <= self.budget or not self._spent:
                    self._spent.append((now, weight))
                    self._total += weight
                    return waited
                # Wait until enough old weight leaves the window.
                need, freed, until = self._total + weight - self.budget, 0, now
                for at, w in self._spent:
                    freed += w
                    until = at
                    if freed >= need:
                        break
                pause = max(until + self.period_s - now, 0.001)
                self._sleep(pause)
                waited += pause

    def charge(self, weight: int) -> None:
        """Record weight already spent (learned from an answer) without waiting."""
        if weight <= 0:
            return
        with self._lock:
            now = self._clock()
            self._expire(now)
            self._spent.append((now, weight))
            self._total += weight


_SHARED: dict[tuple[str, int], WeightLimiter] = {}
_SHARED_LOCK = threading.Lock()


def shared_limiter(url: str, budget: int) -> WeightLimiter:
    """One limiter per API and budget in this process: the market capture and the price
    history draw on the same per-IP budget, whichever client sends."""
    with _SHARED_LOCK:
        key = (url, budget)
        if key not in _SHARED:
            _SHARED[key] = WeightLimiter(budget)
        return _SHARED[key]
