"""The records of `thingwire agent --simulate`: a parked vehicle reporting as AutoPi does.

The shapes are those of AutoPi's "send device data to your own server" guide:

| `@t` | every | fields |
|---|---|---|
| `event.system.power` | once, at start | `@tag: "system/power/on"`, `trigger`, `awaken` |
| `track.pos` | 1 s | `utc`, `loc {lat, lon}`, `alt`, `sog`, `cog`, `nsat` |
| `obd.bat` | 10 s | `voltage`, `level`, `state` |
| `ec2x.data_usage` | 60 s | `sent`, `recv` (bytes, growing) |

They go into the agent's outbox (`Outbox.append`), which uploads them over the link
(docs/device-link.md, "The outbox"). The rate is modest on purpose: a demo, not a load.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from device_agent.outbox import Outbox
from device_agent.records import timestamp

TRACK_EVERY_S = 1.0
BATTERY_EVERY_TICKS = 10
DATA_USAGE_EVERY_TICKS = 60
#: Where the simulated vehicle is parked: the guide's example position.
PARKED = {"lat": 57.02241, "lon": 9.89919}


@dataclass
class SimulatedVehicle:
    """The state the records are drawn from."""

    rng: random.Random = field(default_factory=random.Random)
    lat: float = PARKED["lat"]
    lon: float = PARKED["lon"]
    voltage: float = 12.6
    sent: int = 0
    recv: int = 0

    def power_on(self, now: float) -> dict[str, Any]:
        return {
            "@t": "event.system.power",
            "@ts": timestamp(now),
            "@tag": "system/power/on",
            "trigger": "stn",
            "awaken": "sleeping",
        }

    def position(self, now: float) -> dict[str, Any]:
        self.lat = round(self.lat + self.rng.uniform(-2e-5, 2e-5), 6)
        self.lon = round(self.lon + self.rng.uniform(-2e-5, 2e-5), 6)
        return {
            "@t": "track.pos",
            "@ts": timestamp(now),
            "utc": datetime.fromtimestamp(now, UTC).strftime("%H:%M:%S"),
            "loc": {"lat": self.lat, "lon": self.lon},
            "alt": 34,
            "sog": 0,
            "cog": round(self.rng.uniform(0, 360), 2),
            "nsat": self.rng.randint(6, 12),
        }

    def battery(self, now: float) -> dict[str, Any]:
        self.voltage = round(min(14.8, max(11.8, self.voltage + self.rng.uniform(-0.05, 0.05))), 2)
        level = round(min(100, max(0, (self.voltage - 11.8) / 1.0 * 100)))
        return {
            "@t": "obd.bat",
            "@ts": timestamp(now),
            "voltage": self.voltage,
            "level": level,
            "state": "charging" if self.voltage > 13.2 else "discharging",
        }

    def data_usage(self, now: float) -> dict[str, Any]:
        self.sent += self.rng.randint(500, 3000)
        self.recv += self.rng.randint(500, 5000)
        return {
            "@t": "ec2x.data_usage",
            "@ts": timestamp(now),
            "sent": self.sent,
            "recv": self.recv,
        }


async def produce(outbox: Outbox, vehicle: SimulatedVehicle | None = None) -> None:
    """Append the vehicle's records to the outbox until cancelled."""
    car = vehicle or SimulatedVehicle()
    outbox.append([car.power_on(time.time())])
    tick = 0
    while True:
        now = time.time()
        records = [car.position(now)]
        if tick % BATTERY_EVERY_TICKS == 0:
            records.append(car.battery(now))
        if tick % DATA_USAGE_EVERY_TICKS == 0:
            records.append(car.data_usage(now))
        outbox.append(records)
        tick += 1
        await asyncio.sleep(TRACK_EVERY_S)
