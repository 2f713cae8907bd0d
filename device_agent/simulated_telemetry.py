"""The dongle's own records of `thingwire agent --simulate`, beside its vehicle's.

The simulated vehicle (docs/vehicle.md, "The simulated drive") makes `track.pos`, `obd.bat`
and the `event.system.power` events; what is left here is the device itself, in the shapes
of AutoPi's "send device data to your own server" guide:

| `@t` | every | fields |
|---|---|---|
| `event.system.minion` | once, at start | `@tag: "system/minion/online"` |
| `ec2x.data_usage` | 60 s | `sent`, `recv` (bytes, growing) |

They go into the agent's outbox (`Outbox.append`), which uploads them over the link
(docs/device-link.md, "The outbox").
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from device_agent.records import timestamp

__all__ = ["DATA_USAGE_EVERY_S", "SimulatedModem", "minion_online", "produce"]

DATA_USAGE_EVERY_S = 60.0


class Appends(Protocol):
    """What `produce` needs of the outbox."""

    def append(self, records: Iterable[dict[str, Any]]) -> object: ...


def minion_online(now: float) -> dict[str, Any]:
    """The agent is up: the seed's `event.system.minion` record."""
    return {"@tag": "system/minion/online", "@t": "event.system.minion", "@ts": timestamp(now)}


@dataclass
class SimulatedModem:
    """The cellular modem's byte counters, growing by a few kilobytes a report."""

    rng: random.Random = field(default_factory=random.Random)
    sent: int = 0
    recv: int = 0

    def data_usage(self, now: float) -> dict[str, Any]:
        self.sent += self.rng.randint(500, 3000)
        self.recv += self.rng.randint(500, 5000)
        return {
            "sent": self.sent,
            "recv": self.recv,
            "@t": "ec2x.data_usage",
            "@ts": timestamp(now),
        }


async def produce(
    outbox: Appends,
    modem: SimulatedModem | None = None,
    *,
    every_s: float = DATA_USAGE_EVERY_S,
    clock: Callable[[], float] = time.time,
) -> None:
    """Append the device's records to the outbox until cancelled: online once, then the
    data usage at once and every `every_s`."""
    modem = modem or SimulatedModem()
    outbox.append([minion_online(clock())])
    while True:
        outbox.append([modem.data_usage(clock())])
        await asyncio.sleep(every_s)
