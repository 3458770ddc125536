"""How many wrong passwords an account, and a client address, may try in a window.

Kept in memory: a restart forgets the counts, which costs an attacker a restart they cannot
cause. Counting per account stops guessing one person's password from many addresses; per
address, guessing many accounts' from one.
"""

from __future__ import annotations

import math
import time
from collections import defaultdict, deque
from collections.abc import Callable


class Throttle:
    def __init__(
        self, attempts: int, window_seconds: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.attempts = attempts
        self.window = window_seconds
        self.clock = clock
        self.failures: defaultdict[str, deque[float]] = defaultdict(deque)

    def _recent(self, key: str) -> deque[float]:
        failures = self.failures[key]
        cutoff = self.clock() - self.window
        while failures and failures[0] <= cutoff:
            failures.popleft()
        return failures

    def wait_seconds(self, *keys: str) -> int:
        """0 if every key may try now, else how many seconds until the first may."""
        waits = []
        for key in keys:
            failures = self._recent(key)
            if len(failures) >= self.attempts:
                waits.append(failures[0] + self.window - self.clock())
        return math.ceil(max(waits)) if waits else 0

    def failed(self, *keys: str) -> None:
        now = self.clock()
        for key in keys:
            self._recent(key).append(now)

    def succeeded(self, account_key: str) -> None:
        self.failures.pop(account_key, None)
