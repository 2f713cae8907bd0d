"""Broadcast signals from the simulated vehicle's DBC: decoded, recorded only on change and
at most at their rate, malformed frames counted."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import can
import pytest

from device_agent.vehicle.broadcast import (
    SIMULATED_DBC,
    SignalRecorder,
    SignalRule,
    load_dbc,
    parse_rules,
)

DATABASE = load_dbc(SIMULATED_DBC)
ENGINE = DATABASE.get_message_by_name("ENGINE_STATUS")


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def frame(rpm: float, coolant: float = 85, throttle: float = 14) -> can.Message:
    data = ENGINE.encode({"EngineSpeed": rpm, "CoolantTemp": coolant, "ThrottlePos": throttle})
    return can.Message(arbitration_id=ENGINE.frame_id, data=data, is_extended_id=False)


def recorder(rules: dict[str, SignalRule]) -> tuple[SignalRecorder, list[dict[str, Any]], Clock]:
    records: list[dict[str, Any]] = []
    clock = Clock()

    def sink(batch: Iterable[dict[str, Any]]) -> None:
        records.extend(batch)

    found = SignalRecorder.from_file(SIMULATED_DBC, sink, rules)
    found.clock = clock
    return found, records, clock


def test_a_selected_signal_becomes_a_record() -> None:
    signals, records, _ = recorder({"EngineSpeed": SignalRule()})
    signals.on_frame(frame(800))
    assert [(r["@t"], r["value"]) for r in records] == [("can.EngineSpeed", 800.0)]


def test_an_idle_bus_adds_nothing_and_changes_wait_for_their_rate() -> None:
    signals, records, clock = recorder({"EngineSpeed": SignalRule(min_change=50, min_interval_s=1)})
    for _ in range(100):
        signals.on_frame(frame(800))  # the same value 100 times
    signals.on_frame(frame(820))  # a small change: below the threshold
    clock.now += 0.5
    signals.on_frame(frame(1500))  # a big change, but too soon
    clock.now += 1.0
    signals.on_frame(frame(1500))
    assert [r["value"] for r in records] == [800.0, 1500.0]


def test_unselected_unknown_and_malformed_frames() -> None:
    signals, records, _ = recorder({"Speed": SignalRule()})
    signals.on_frame(frame(800))  # ENGINE_STATUS: no selected signal in it
    signals.on_frame(can.Message(arbitration_id=0x123, data=b"\x00" * 8, is_extended_id=False))
    speed = DATABASE.get_message_by_name("VEHICLE_SPEED")
    signals.on_frame(can.Message(arbitration_id=speed.frame_id, data=b"\x01", is_extended_id=False))
    assert records == []
    assert signals.malformed == 1


def test_rules_from_text_and_bad_configuration(tmp_path: Path) -> None:
    assert parse_rules("EngineSpeed:50:1, Speed") == {
        "EngineSpeed": SignalRule(50.0, 1.0),
        "Speed": SignalRule(0.0, 1.0),
    }
    for bad in ("EngineSpeed:fast", "EngineSpeed:-1", "a:1:2:3"):
        with pytest.raises(ValueError, match=r"signal:change:seconds"):
            parse_rules(bad)
    with pytest.raises(ValueError, match="no signal 'Warp'"):
        SignalRecorder.from_file(SIMULATED_DBC, lambda _: None, {"Warp": SignalRule()})
    (tmp_path / "broken.dbc").write_text("this is not a DBC")
    with pytest.raises(ValueError, match="cannot load"):
        SignalRecorder.from_file(tmp_path / "broken.dbc", lambda _: None, {})
