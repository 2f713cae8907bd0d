"""Polling OBD-II PIDs at their rates; every reading becomes an outbox record (docs/vehicle.md,
"Polling").

Each PID has its own interval (`PollPlan`). A reading is a record such as
`{"@t": "obd.rpm", "@ts": <the time of the answer>, "value": 1726.0}` (the battery:
`obd.bat` with `voltage`, `level` and `state`), handed to a sink (the outbox's `append`).

The rate adapts. When the ECU answers slowly, or not at all, the PID's interval doubles, up
to `max_backoff` times its own; each good answer halves it back. A car with the ignition off
is asked rarely, not hammered. Answers that do not decode are counted and skipped, never
raised.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from device_agent.records import timestamp
from device_agent.vehicle import pids
from device_agent.vehicle.obd_client import NoAnswer
from device_agent.vehicle.pids import DecodeError

__all__ = ["PollPlan", "PollStats", "Poller"]

log = logging.getLogger(__name__)

#: The default plan: what a dongle reports, and how often (seconds).
DEFAULT_RATES: dict[str, float] = {
    "rpm": 1.0,
    "speed": 1.0,
    "engine_load": 5.0,
    "coolant_temp": 10.0,
    "intake_temp": 10.0,
    "throttle_pos": 5.0,
    "fuel_level": 60.0,
    "control_module_voltage": 10.0,
}
#: An answer slower than this fraction of the PID's interval counts as slow.
SLOW_FRACTION = 0.5


class Reader(Protocol):
    """What the poller needs of `ObdClient`."""

    async def read(self, key: str | int) -> tuple[pids.Pid, float]: ...


@dataclass(frozen=True)
class PollPlan:
    """PIDs and their intervals, in seconds."""

    rates: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_RATES))
    max_backoff: float = 16.0

    @classmethod
    def parse(cls, text: str) -> PollPlan:
        """`rpm=1,speed=1,coolant_temp=10` (THINGWIRE_AGENT_OBD_PIDS); ValueError naming
        a PID not known or an interval not a positive number."""
        rates: dict[str, float] = {}
        for item in filter(None, (part.strip() for part in text.split(","))):
            name, _, seconds = item.partition("=")
            entry = pids.lookup(name.strip())  # KeyError for an unknown PID
            try:
                interval = float(seconds) if seconds else 1.0
            except ValueError:
                raise ValueError(f"{item!r}: the interval is not a number of seconds") from None
            if not 0.05 <= interval <= 86_400:
                raise ValueError(f"{item!r}: the interval must be 0.05 to 86400 seconds")
            rates[entry.name] = interval
        if not rates:
            raise ValueError("no PIDs to poll")
        return cls(rates)


@dataclass
class PollStats:
    """What polling saw: readings made, requests unanswered, answers that did not decode."""

    readings: int = 0
    unanswered: int = 0
    malformed: int = 0


class Poller:
    """Reads the plan's PIDs through `reader` and hands each reading to `sink`."""

    def __init__(
        self,
        reader: Reader,
        sink: Callable[[Iterable[dict[str, Any]]], object],
        plan: PollPlan | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._reader = reader
        self._sink = sink
        self.plan = plan or PollPlan()
        self._clock = clock
        self.stats = PollStats()
        #: Each PID's current interval (its own, or longer after slow or missing answers).
        self.intervals = dict(self.plan.rates)
        self._due = dict.fromkeys(self.plan.rates, 0.0)

    async def run(self) -> None:
        """Poll until cancelled."""
        while True:
            now = self._clock()
            name = min(self._due, key=self._due.__getitem__)
            if self._due[name] > now:
                await asyncio.sleep(self._due[name] - now)
            await self.poll_once(name)

    async def poll_once(self, name: str) -> dict[str, Any] | None:
        """Ask one PID now; its record, or None (no answer, or one that did not decode)."""
        started = self._clock()
        own = self.plan.rates[name]
        try:
            entry, value = await self._reader.read(name)
        except NoAnswer as missing:
            self.stats.unanswered += 1
            self._slow_down(name, own)
            log.debug("obd %s: %s", name, missing)
            return None
        except DecodeError as error:
            self.stats.malformed += 1
            self._due[name] = self._clock() + self.intervals[name]
            log.debug("obd %s: %s", name, error)
            return None
        elapsed = self._clock() - started
        if elapsed > SLOW_FRACTION * own:
            self._slow_down(name, own)
        else:
            self.intervals[name] = max(own, self.intervals[name] / 2)
            self._due[name] = self._clock() + self.intervals[name]
        record = {"@t": entry.record, "@ts": timestamp(), **entry.fields(value)}
        self.stats.readings += 1
        self._sink([record])
        return record

    def _slow_down(self, name: str, own: float) -> None:
        self.intervals[name] = min(self.intervals[name] * 2, own * self.plan.max_backoff)
        self._due[name] = self._clock() + self.intervals[name]
