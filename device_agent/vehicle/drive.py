"""The simulated car's drive: what `thingwire agent --simulate` reads from its ECUs.

Moves the simulated ECUs' values a little every second: the engine runs, so the battery
charges above its resting 12.6 V (docs/vehicle.md, "The simulated drive").
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol

__all__ = ["ENGINE_VALUES", "TRANSMISSION_VALUES", "SimulatedDrive", "SimulatedEcu"]

#: A parked car with the engine idling: the engine ECU's values by PID.
ENGINE_VALUES: dict[int, float] = {0x04: 18.0, 0x05: 84.0, 0x0C: 780.0, 0x0D: 0.0, 0x0F: 21.0,
                                   0x11: 14.0, 0x2F: 62.0, 0x42: 14.1}  # fmt: skip
#: The transmission ECU answers the speed too, as gearboxes do.
TRANSMISSION_VALUES: dict[int, float] = {0x0D: 0.0, 0x5C: 70.0}


class SimulatedEcu(Protocol):
    """What the drive needs of `EcuSimulator`: its values, and whether it answers."""

    values: dict[int, float]
    silent: bool


class SimulatedDrive:
    """Drives the ECUs' values; records that come from outside the CAN bus (GPS, power
    events) go to `sink`. Each value is written into every ECU that holds its PID."""

    def __init__(
        self,
        ecus: Sequence[SimulatedEcu],
        sink: Callable[[Iterable[dict[str, Any]]], object],
        *,
        rng: random.Random | None = None,
        tick_s: float = 1.0,
    ) -> None:
        self.ecus = ecus
        self._sink = sink
        self._rng = rng or random.Random()  # noqa: S311 - a simulation, not a secret
        self.tick_s = tick_s

    def _set(self, pid: int, value: float) -> None:
        for ecu in self.ecus:
            if pid in ecu.values:
                ecu.values[pid] = value

    async def run(self) -> None:
        """Drive until cancelled."""
        speed = 0.0
        while True:
            await asyncio.sleep(self.tick_s)
            speed = max(0.0, min(130.0, speed + self._rng.uniform(-5, 6)))
            rpm = 780.0 + speed * 25 + self._rng.uniform(-20, 20)
            self._set(0x0D, speed)
            self._set(0x0C, rpm)
            self._set(0x42, round(13.8 + self._rng.uniform(0, 0.6), 2) if rpm > 500 else 12.6)
