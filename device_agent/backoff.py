"""Reconnect delays: exponential backoff with full jitter, capped.

Full jitter (a uniform delay between 0 and the exponential bound) spreads a fleet's
reconnects after an outage instead of bunching them in waves; the cap keeps a device back
within seconds of the server.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Backoff:
    """Delay before reconnect attempt `attempt` (0 for the first after a failure)."""

    base_s: float = 0.5
    cap_s: float = 10.0
    #: A number in [0, 1); injected so tests get fixed delays.
    rng: Callable[[], float] = field(default=random.random)

    def bound(self, attempt: int) -> float:
        """The largest delay of this attempt: base · 2^attempt, at most the cap."""
        return min(self.cap_s, self.base_s * 2 ** min(attempt, 32))

    def delay(self, attempt: int) -> float:
        """A delay drawn uniformly from [0, bound(attempt))."""
        return self.rng() * self.bound(attempt)
