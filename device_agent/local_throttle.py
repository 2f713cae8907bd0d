"""Failed Local API logins, counted per client address, so that a password cannot be guessed
at the speed of the network (docs/device-side.md, "Access").

Five failures from one address lock that address out of the login for 30 s; each further
failure doubles the lock, up to 15 minutes; a right password clears the address. The
address is the real peer's: the device gateway overwrites `x-forwarded-for` with it, and the
LocalService is reachable only through the gateway (an owner-only socket). Another address
is not affected, so a neighbour on the hotspot cannot lock the owner out. At most
`MAX_ADDRESSES` are remembered; the one seen longest ago is forgotten first.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["LoginThrottle"]

FREE_FAILURES = 5
FIRST_LOCK_SECONDS = 30.0
MAX_LOCK_SECONDS = 900.0
MAX_ADDRESSES = 4096


@dataclass
class _Record:
    failures: int = 0
    locked_until: float = 0.0


class LoginThrottle:
    """Counts failed logins per address and says how long an address must wait."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._records: OrderedDict[str, _Record] = OrderedDict()

    def retry_after(self, address: str) -> int | None:
        """Whole seconds ``address`` must still wait before its next login, or None."""
        record = self._records.get(address)
        if record is None:
            return None
        left = record.locked_until - self._clock()
        return math.ceil(left) if left > 0 else None

    def failed(self, address: str) -> None:
        """One more failure of ``address``; past the free ones, it is locked out a while."""
        record = self._records.pop(address, None) or _Record()
        record.failures += 1
        if record.failures >= FREE_FAILURES:
            doublings = record.failures - FREE_FAILURES
            lock = min(FIRST_LOCK_SECONDS * 2 ** min(doublings, 16), MAX_LOCK_SECONDS)
            record.locked_until = self._clock() + lock
        self._records[address] = record
        while len(self._records) > MAX_ADDRESSES:
            self._records.popitem(last=False)

    def succeeded(self, address: str) -> None:
        """A right password: the address starts afresh."""
        self._records.pop(address, None)
