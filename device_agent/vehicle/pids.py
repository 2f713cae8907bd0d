"""OBD-II mode 01 (current data): which PIDs the agent reads, and SAE J1979's formula for each.

A mode 01 answer is `0x41, PID, A, B, …`; each PID's value is a formula of the data bytes
A, B, C, D (docs/vehicle.md, "Decoding"). The table names each PID once: its name, the bytes
it answers, its formula, its unit, and the record it becomes in the outbox. Record types
follow AutoPi's: `obd.<name>` with a `value`, except the battery, which the seed's examples
show as `obd.bat` with `voltage`, `level` and `state` (PID 0x42, the control module's
supply voltage; device_agent/vehicle/battery.py).

Which PIDs an ECU answers is itself PID data: 0x00, 0x20, 0x40, … each answer a 32-bit map
of the next 32 PIDs (`supported_pids`).
"""

from __future__ import annotations

import contextlib
import reprlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from device_agent.vehicle.battery import battery_fields

__all__ = [
    "BY_NAME",
    "BY_PID",
    "BY_RECORD",
    "SUPPORT_PIDS",
    "DecodeError",
    "Pid",
    "decode",
    "lookup",
    "supported_pids",
]

MODE_CURRENT = 0x01
#: A PID number written out is short (`0x0C`, `12`); longer text is no number of ours.
MAX_NUMBER_TEXT = 8
_SHORT = reprlib.Repr()
_SHORT.maxstring = _SHORT.maxlong = _SHORT.maxother = 40
#: The PIDs whose answers are maps of the PIDs supported after them.
SUPPORT_PIDS = (0x00, 0x20, 0x40, 0x60, 0x80, 0xA0, 0xC0)


class DecodeError(ValueError):
    """An answer that is not one this PID gives (too short, another PID): counted, ignored."""


@dataclass(frozen=True)
class Pid:
    """One mode 01 PID: how many data bytes it answers and what they mean."""

    pid: int
    name: str
    size: int
    formula: Callable[[bytes], float]
    unit: str
    record_type: str = ""
    field: str = "value"
    #: More fields of the record, derived from the value (the battery's level and state).
    derived: Callable[[float], dict[str, Any]] | None = None

    @property
    def record(self) -> str:
        """The outbox record type of a reading: `obd.<name>` unless the table says else."""
        return self.record_type or f"obd.{self.name}"

    def fields(self, value: float) -> dict[str, Any]:
        """A reading's fields in its record: `{"value": 780.0}`, or for the battery
        `{"voltage": 14.1, "level": 100, "state": "charging"}` as in the seed's examples."""
        return {self.field: value, **(self.derived(value) if self.derived else {})}


def _a(data: bytes) -> int:
    return data[0]


def _ab(data: bytes) -> int:
    return 256 * data[0] + data[1]


_TABLE = (
    Pid(0x04, "engine_load", 1, lambda d: _a(d) * 100 / 255, "%"),
    Pid(0x05, "coolant_temp", 1, lambda d: _a(d) - 40, "°C"),
    Pid(0x0B, "intake_pressure", 1, _a, "kPa"),
    Pid(0x0C, "rpm", 2, lambda d: _ab(d) / 4, "rpm"),
    Pid(0x0D, "speed", 1, _a, "km/h"),
    Pid(0x0F, "intake_temp", 1, lambda d: _a(d) - 40, "°C"),
    Pid(0x10, "maf", 2, lambda d: _ab(d) / 100, "g/s"),
    Pid(0x11, "throttle_pos", 1, lambda d: _a(d) * 100 / 255, "%"),
    Pid(0x1F, "run_time", 2, _ab, "s"),
    Pid(0x2F, "fuel_level", 1, lambda d: _a(d) * 100 / 255, "%"),
    Pid(
        0x42,
        "control_module_voltage",
        2,
        lambda d: _ab(d) / 1000,
        "V",
        "obd.bat",
        "voltage",
        battery_fields,
    ),
    Pid(0x46, "ambient_air_temp", 1, lambda d: _a(d) - 40, "°C"),
    Pid(0x5C, "oil_temp", 1, lambda d: _a(d) - 40, "°C"),
)
BY_PID = {entry.pid: entry for entry in _TABLE}
BY_NAME = {entry.name: entry for entry in _TABLE}
#: Each PID by the record type its readings become (`obd.bat` is 0x42).
BY_RECORD = {entry.record: entry for entry in _TABLE}


def lookup(key: str | int) -> Pid:
    """A PID by name (`rpm`), by number (12), or by number as text (`0x0C`, `12`);
    KeyError naming what is known otherwise (what was asked shortened: it may be anything
    a caller sent, and the message reaches answers and logs)."""
    if isinstance(key, str):
        if key.lower() in BY_NAME:
            return BY_NAME[key.lower()]
        if len(key) <= MAX_NUMBER_TEXT:
            with contextlib.suppress(ValueError):
                number = int(key, 0)
                if number in BY_PID:
                    return BY_PID[number]
    elif key in BY_PID:
        return BY_PID[key]
    asked = f"0x{key:02X}" if isinstance(key, int) and 0 <= key <= 0xFF else _SHORT.repr(key)
    raise KeyError(f"unknown PID {asked}; known: {', '.join(sorted(BY_NAME))}")


def decode(answer: bytes) -> tuple[Pid, float]:
    """A mode 01 answer (`0x41 PID A B …`) as its PID and value; DecodeError otherwise."""
    if len(answer) < 2 or answer[0] != MODE_CURRENT + 0x40:
        raise DecodeError(f"not a mode 01 answer: {answer.hex()}")
    entry = BY_PID.get(answer[1])
    if entry is None:
        raise DecodeError(f"no formula for PID 0x{answer[1]:02X}")
    data = answer[2:]
    if len(data) < entry.size:
        raise DecodeError(f"PID 0x{entry.pid:02X} answers {entry.size} bytes, got {len(data)}")
    return entry, round(float(entry.formula(data[: entry.size])), 3)


def supported_pids(answers: Iterable[bytes]) -> set[int]:
    """The PIDs that the answers to 0x00, 0x20, … say are supported. Each answer's bit 7 of
    A is the PID after the asked one, bit 0 of D the 32nd (which says the next map exists)."""
    supported: set[int] = set()
    for answer in answers:
        if len(answer) < 6 or answer[0] != MODE_CURRENT + 0x40 or answer[1] not in SUPPORT_PIDS:
            raise DecodeError(f"not an answer to a supported-PID request: {answer.hex()}")
        bits = int.from_bytes(answer[2:6], "big")
        base = answer[1]
        supported |= {base + 1 + i for i in range(32) if bits & (1 << (31 - i))}
    return supported
