"""Audit: broadcast frames the DBC does not describe as they are, and signals that decode
to values no record can carry (docs/vehicle.md, "Broadcast signals"; docs/telemetry-ingest.md:
NaN and infinity are set aside by the cloud, and refused by the outbox)."""

from __future__ import annotations

import math
import struct
from collections.abc import Iterable
from typing import Any

import can
import cantools
import pytest

from device_agent.records import encode
from device_agent.vehicle.broadcast import SIMULATED_DBC, SignalRecorder, SignalRule, load_dbc

DATABASE = load_dbc(SIMULATED_DBC)
ENGINE = DATABASE.get_message_by_name("ENGINE_STATUS")
#: A DBC with one IEEE-754 float signal, as DBCs of real cars have (SIG_VALTYPE_ 1).
FLOAT_DBC = """VERSION ""
BU_: ECM
BO_ 1024 OIL: 8 ECM
 SG_ OilPressure : 0|32@1- (1,0) [0|0] "bar" Vector__XXX
SIG_VALTYPE_ 1024 OilPressure : 1;
"""


def recorder(database: Any, signal: str) -> tuple[SignalRecorder, list[dict[str, Any]]]:
    records: list[dict[str, Any]] = []

    def sink(batch: Iterable[dict[str, Any]]) -> None:
        records.extend(batch)

    return SignalRecorder(database, sink, {signal: SignalRule(0, 0)}), records


def test_an_extended_id_frame_is_not_taken_for_the_standard_message_of_that_number() -> None:
    """0x400 with a 29-bit id is another message than ENGINE_STATUS (0x400, 11-bit): a
    J1939 ECU's, say. Today it is decoded as ENGINE_STATUS and recorded as can.EngineSpeed."""
    signals, records = recorder(DATABASE, "EngineSpeed")
    data = ENGINE.encode({"EngineSpeed": 6000, "CoolantTemp": 90, "ThrottlePos": 50})
    signals.on_frame(can.Message(arbitration_id=ENGINE.frame_id, data=data, is_extended_id=True))
    assert records == []


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_a_float_signal_with_no_value_makes_no_record_the_outbox_refuses(value: float) -> None:
    """A float signal's bytes can be NaN or infinity; today that becomes a record the
    outbox refuses (logging a warning for each frame, ten a second) and counts as
    recorded, instead of being counted as malformed."""
    database = cantools.database.load_string(FLOAT_DBC, database_format="dbc")
    signals, records = recorder(database, "OilPressure")
    data = struct.pack("<f", value) + bytes(4)
    signals.on_frame(can.Message(arbitration_id=1024, data=data, is_extended_id=False))
    assert all(encode(record) is not None for record in records), records
    assert signals.recorded == len(records)
    assert signals.malformed == 1


def test_remote_and_error_frames_are_neither_decoded_nor_counted_as_malformed() -> None:
    """A remote frame is another node asking for ENGINE_STATUS (it carries no data); an
    error frame is the controller's report. Neither is a malformed ENGINE_STATUS, yet a
    node asking ten times a second would make `malformed` climb ten a second."""
    signals, records = recorder(DATABASE, "EngineSpeed")
    for frame in (
        can.Message(arbitration_id=ENGINE.frame_id, is_remote_frame=True, dlc=8,
                    is_extended_id=False),
        can.Message(arbitration_id=ENGINE.frame_id, is_error_frame=True, data=bytes(8),
                    is_extended_id=False),
    ):  # fmt: skip
        signals.on_frame(frame)
    assert records == []
    assert signals.malformed == 0
