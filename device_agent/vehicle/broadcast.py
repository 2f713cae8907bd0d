"""Broadcast CAN signals, decoded with a DBC file (cantools), as outbox records
(docs/vehicle.md, "Broadcast signals").

ECUs broadcast many frames many times a second whether or not anyone asks. A DBC file names
the signals in them. `SignalRecorder` decodes the frames of the selected signals and turns
a signal into a record (`{"@t": "can.EngineSpeed", "@ts": …, "value": 800.0}`) only when
it has changed by at least its change threshold, and no more often than its rate threshold
allows. An idle bus, with the same values over and over, adds nothing to the outbox. Frames
the DBC does not describe are skipped; frames it describes that do not decode (a wrong
length, say) are counted and skipped.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import can
import cantools

from device_agent.records import timestamp

__all__ = [
    "SIMULATED_DBC",
    "SignalRecorder",
    "SignalRule",
    "check_signals",
    "load_dbc",
    "parse_rules",
]

#: The DBC of the simulated vehicle (device_agent/vehicle/dbc/simulated.dbc).
SIMULATED_DBC = Path(__file__).with_name("dbc") / "simulated.dbc"


@dataclass(frozen=True)
class SignalRule:
    """When a signal's new value is worth a record: it moved by `min_change` or more, and
    `min_interval_s` has passed since its last record."""

    min_change: float = 0.0
    min_interval_s: float = 1.0


@dataclass
class _Last:
    value: float
    at: float


@dataclass
class SignalRecorder:
    """Decodes the selected signals of a DBC from frames and records their changes."""

    database: Any
    sink: Callable[[Iterable[dict[str, Any]]], object]
    rules: Mapping[str, SignalRule]
    clock: Callable[[], float] = time.monotonic
    malformed: int = 0
    recorded: int = 0
    _last: dict[str, _Last] = field(default_factory=dict)

    @classmethod
    def from_file(
        cls,
        path: Path,
        sink: Callable[[Iterable[dict[str, Any]]], object],
        rules: Mapping[str, SignalRule],
    ) -> SignalRecorder:
        """ValueError for a DBC that does not load, or a rule naming no signal in it."""
        database = load_dbc(path)
        check_signals(database, rules, path)
        return cls(database, sink, rules)

    def on_frame(self, frame: can.Message) -> None:
        """One frame from the bus (python-can's Notifier calls it). Remote frames (a node
        asking for a message) and error frames (the controller's reports) carry no signals;
        a 29-bit id is another message than the 11-bit one of the same number."""
        if frame.is_remote_frame or frame.is_error_frame:
            return
        try:
            message = self.database.get_message_by_frame_id(frame.arbitration_id)
        except KeyError:
            return  # a frame the DBC does not describe
        if message.is_extended_frame != frame.is_extended_id:
            return
        if not any(signal.name in self.rules for signal in message.signals):
            return
        try:
            decoded = message.decode(bytes(frame.data), decode_choices=False)
        except (ValueError, KeyError, cantools.database.DecodeError):
            self.malformed += 1
            return
        values = {name: float(value) for name, value in decoded.items() if name in self.rules}
        if not all(map(math.isfinite, values.values())):
            self.malformed += 1  # a float signal's NaN or infinity: no record can carry it
            return
        records = [
            record
            for name, value in values.items()
            if (record := self._record(name, value)) is not None
        ]
        if records:
            self.recorded += len(records)
            self.sink(records)

    def _record(self, name: str, value: float) -> dict[str, Any] | None:
        rule, now = self.rules[name], self.clock()
        last = self._last.get(name)
        if last is not None and (
            abs(value - last.value) < rule.min_change or now - last.at < rule.min_interval_s
        ):
            return None
        self._last[name] = _Last(value, now)
        return {"@t": f"can.{name}", "@ts": timestamp(), "value": value}


def check_signals(database: Any, rules: Mapping[str, SignalRule], path: Path) -> None:
    """ValueError naming the first rule whose signal the DBC does not have."""
    known = {signal.name for message in database.messages for signal in message.signals}
    unknown = sorted(set(rules) - known)
    if unknown:
        raise ValueError(f"{path} has no signal {unknown[0]!r}")


def load_dbc(path: Path) -> cantools.database.can.Database:
    """The CAN database in ``path``; ValueError for a file that is not one (missing, a
    directory, not text, not a DBC)."""
    try:
        database = cantools.database.load_file(str(path))
    except (OSError, ValueError, cantools.database.UnsupportedDatabaseFormatError) as error:
        reason = (str(error).strip().splitlines() or [type(error).__name__])[0][:200]
        raise ValueError(f"cannot load the DBC {path}: {reason}") from None
    if not isinstance(database, cantools.database.can.Database):
        raise ValueError(f"cannot load the DBC {path}: not a CAN database")
    return database


def parse_rules(text: str) -> dict[str, SignalRule]:
    """`EngineSpeed:50:1,Speed:1:5` (THINGWIRE_AGENT_CAN_SIGNALS): signal, change threshold,
    seconds between records (defaults 0 and 1); ValueError naming a bad item."""
    rules: dict[str, SignalRule] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, *numbers = item.split(":")
        try:
            change = float(numbers[0]) if numbers else 0.0
            interval = float(numbers[1]) if len(numbers) > 1 else 1.0
        except ValueError:
            raise ValueError(f"{item!r}: thresholds are numbers (signal:change:seconds)") from None
        if not name or change < 0 or interval < 0 or len(numbers) > 2:
            raise ValueError(f"{item!r}: write signal:change:seconds")
        rules[name] = SignalRule(change, interval)
    return rules
