"""Audit: the vehicle's configuration (THINGWIRE_AGENT_CAN_*), refused at start with a
message naming the variable, as docs/vehicle.md ("Broadcast signals", "In the agent") says,
instead of being found out later by the bus's retry loop or as a bare Python error."""

from __future__ import annotations

from pathlib import Path

import pytest

from device_agent.vehicle.broadcast import SIMULATED_DBC
from device_agent.vehicle.runtime import VehicleSettings


def settings(**env: str) -> VehicleSettings:
    return VehicleSettings.from_env({"THINGWIRE_AGENT_CAN_INTERFACE": "virtual", **env})


@pytest.mark.parametrize("kind", ["missing", "directory", "not a DBC"])
def test_a_dbc_that_does_not_load_is_refused_at_start_naming_the_variable(
    tmp_path: Path, kind: str
) -> None:
    """Today the path is taken as it is; loading it fails inside every bus session, logged
    as "the CAN bus virtual/can0 failed" and retried forever, and the agent never exits."""
    path = tmp_path / "car.dbc"
    if kind == "directory":
        path.mkdir()
    elif kind == "not a DBC":
        path.write_bytes(b"\x00\xff\xfe this is no CAN database\n")
    with pytest.raises(ValueError, match="THINGWIRE_AGENT_CAN_DBC"):
        settings(THINGWIRE_AGENT_CAN_DBC=str(path), THINGWIRE_AGENT_CAN_SIGNALS="EngineSpeed")


def test_a_signal_the_dbc_does_not_have_is_refused_at_start_naming_the_variable() -> None:
    """docs/vehicle.md: "A signal not in the DBC ... refused at start, naming the variable"."""
    with pytest.raises(ValueError, match="THINGWIRE_AGENT_CAN_SIGNALS"):
        settings(
            THINGWIRE_AGENT_CAN_DBC=str(SIMULATED_DBC),
            THINGWIRE_AGENT_CAN_SIGNALS="EngineSpeed,NoSuchSignal",
        )


@pytest.mark.parametrize("text", ["²", "9" * 5000])
def test_a_bitrate_that_is_no_number_is_refused_naming_the_variable(text: str) -> None:
    """`str.isdigit` accepts "²" and 5000 digits, which `int` then refuses with its own
    message ("invalid literal for int()", "Exceeds the limit"), naming no variable."""
    with pytest.raises(ValueError, match="THINGWIRE_AGENT_CAN_BITRATE"):
        settings(THINGWIRE_AGENT_CAN_BITRATE=text)


def test_an_interface_python_can_does_not_have_is_refused_at_start() -> None:
    """A misspelt interface (`sokcetcan`) can never open: today it is retried every 60 s
    for ever, logged as a bus failure, instead of the one-line error at start."""
    with pytest.raises(ValueError, match="THINGWIRE_AGENT_CAN_INTERFACE"):
        VehicleSettings.from_env({"THINGWIRE_AGENT_CAN_INTERFACE": "sokcetcan"})
