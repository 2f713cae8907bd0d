"""The vehicle in the agent: the simulated ECU polled into a sink, the commands and the
resource reading it, and a bus that cannot be opened."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from device_agent.commands import CommandError, Commands, CommandUnavailable
from device_agent.vehicle import runtime
from device_agent.vehicle.poller import PollPlan
from device_agent.vehicle.runtime import Vehicle, VehicleSettings

#: asyncio's default pool on a 2-core machine: min(32, cores + 4).
DEFAULT_WORKERS = 6


def test_settings_from_the_environment() -> None:
    settings = VehicleSettings.from_env(
        {
            "THINGWIRE_AGENT_CAN_INTERFACE": "socketcan",
            "THINGWIRE_AGENT_CAN_CHANNEL": "vcan0",
            "THINGWIRE_AGENT_CAN_BITRATE": "500000",
            "THINGWIRE_AGENT_OBD_PIDS": "rpm=0.5,speed=1",
        }
    )
    assert (settings.interface, settings.channel, settings.bitrate) == (
        "socketcan",
        "vcan0",
        500000,
    )
    assert settings.plan.rates == {"rpm": 0.5, "speed": 1.0}
    assert VehicleSettings.from_env({}).interface is None
    for bad in (
        {"THINGWIRE_AGENT_CAN_BITRATE": "fast"},
        {"THINGWIRE_AGENT_OBD_PIDS": "warp=1"},
        {"THINGWIRE_AGENT_CAN_SIGNALS": "EngineSpeed:x"},
        {"THINGWIRE_AGENT_CAN_SIGNALS": "EngineSpeed"},  # no DBC to find it in
    ):
        with pytest.raises(ValueError, match="THINGWIRE_AGENT_"):
            VehicleSettings.from_env(bad)
    with pytest.raises(ValueError, match=r"^THINGWIRE_AGENT_OBD_PIDS: unknown PID 'warp';"):
        VehicleSettings.from_env({"THINGWIRE_AGENT_OBD_PIDS": "warp=1"})  # no extra quotes


def test_the_simulated_vehicle_is_polled_and_answers_commands(tmp_path: Any) -> None:
    async def scenario() -> tuple[list[dict[str, Any]], dict[str, float], Any, Any, Any]:
        records: list[dict[str, Any]] = []
        got_battery = asyncio.Event()

        def sink(batch: Iterable[dict[str, Any]]) -> None:
            records.extend(batch)
            kinds = {r["@t"] for r in records}
            if {"obd.bat", "can.EngineSpeed", "can.Speed"} <= kinds:
                got_battery.set()

        plan = PollPlan({"rpm": 0.1, "control_module_voltage": 0.1})
        vehicle = Vehicle(VehicleSettings(plan=plan), sink, simulate=True)
        commands = Commands(tmp_path)
        commands.register("obd.query", vehicle.query)
        commands.register("obd.dtc", vehicle.dtc)
        commands.register("obd.status", vehicle.status)
        with pytest.raises(CommandUnavailable):
            await commands.execute("obd.query", ["rpm"], {})  # before the bus is open
        task = asyncio.create_task(vehicle.run())
        try:
            await got_battery.wait()
            rpm = await commands.execute("obd.query", ["rpm"], {})
            codes = await commands.execute("obd.dtc", [], {})
            with pytest.raises(CommandError, match="unknown PID"):
                await commands.execute("obd.query", ["warp"], {})
            status = await commands.execute("obd.status", [], {})
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        return records, vehicle.current(), rpm, codes, status

    records, current, rpm, codes, status = asyncio.run(asyncio.wait_for(scenario(), 20))
    # the simulated car's engine and gearbox both answered the functional request
    assert status["ecus"] == ["0x7E8", "0x7E9"]
    assert status["vin"] == "WP0ZZZ99ZTS392124"
    assert status["polled"] == ["control_module_voltage", "rpm"]
    assert status["readings"] >= 2
    assert status["frame_errors"] == 0
    assert {"obd.rpm", "obd.bat", "can.EngineSpeed"} <= {record["@t"] for record in records}
    broadcast = [r for r in records if r["@t"] == "can.EngineSpeed"]
    assert len(broadcast) == 1  # ten frames a second, one record: the rest is unchanged
    assert set(current) == {"rpm", "control_module_voltage"}
    assert current["control_module_voltage"] > 12.0
    assert rpm["name"] == "rpm"
    assert rpm["unit"] == "rpm"
    assert rpm["value"] > 0
    assert codes == []


def test_a_bus_that_cannot_open_is_retried_and_nothing_else_stops(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(runtime, "RETRY_FIRST_S", 0.05)
    settings = VehicleSettings(interface="socketcan", channel="thingwire-no-such-can0")

    async def scenario() -> int:
        vehicle = Vehicle(settings, lambda _: None)
        task = asyncio.create_task(vehicle.run())
        await asyncio.sleep(0.4)
        assert not task.done()  # still trying, and the loop (the rest of the agent) runs
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return vehicle.failures

    with caplog.at_level(logging.ERROR, logger="device_agent.vehicle.runtime"):
        failures = asyncio.run(scenario())
    assert failures >= 2
    assert "trying again" in caplog.text


def test_pids_no_ecu_supports_are_left_out_of_the_plan() -> None:
    async def scenario() -> dict[str, Any]:
        plan = PollPlan({"rpm": 0.1, "maf": 0.1, "oil_temp": 0.1})
        kinds: set[str] = set()
        both = asyncio.Event()

        def sink(batch: Iterable[dict[str, Any]]) -> None:
            kinds.update(record["@t"] for record in batch)
            if {"obd.rpm", "obd.oil_temp"} <= kinds:
                both.set()

        vehicle = Vehicle(VehicleSettings(plan=plan), sink, simulate=True)
        task = asyncio.create_task(vehicle.run())
        try:
            await both.wait()
            return await vehicle.status()
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    status = asyncio.run(asyncio.wait_for(scenario(), 20))
    # the simulated car has no MAF sensor; its gearbox reports the oil temperature
    assert status["polled"] == ["oil_temp", "rpm"]
    assert status["unsupported"] == ["maf"]
    assert status["unanswered"] == 0


def test_a_bus_where_no_ecu_answers_is_asked_again_and_commands_say_so(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    monkeypatch.setattr(runtime, "DISCOVER_FIRST_S", 0.05)
    settings = VehicleSettings(interface="virtual", channel=f"no-car-{tmp_path.name}")
    asked: list[int] = []
    thrice = asyncio.Event()
    discover = runtime.discover

    async def counting_discover(*args: Any, **kwargs: Any) -> Any:
        asked.append(1)
        found = await discover(*args, **kwargs)
        if len(asked) >= 3:
            thrice.set()
        return found

    monkeypatch.setattr(runtime, "discover", counting_discover)

    async def scenario() -> dict[str, Any]:
        vehicle = Vehicle(settings, lambda _: None)
        commands = Commands(tmp_path)
        commands.register("obd.query", vehicle.query)
        task = asyncio.create_task(vehicle.run())
        try:
            await thrice.wait()
            with pytest.raises(CommandUnavailable, match="no ECU"):
                await commands.execute("obd.query", ["rpm"], {})
            assert not task.done()
            return await vehicle.status()
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    status = asyncio.run(asyncio.wait_for(scenario(), 20))
    assert status["ecus"] == []
    assert status["bus_failures"] == 0


def test_the_vehicle_leaves_asyncios_default_threads_to_the_rest_of_the_agent() -> None:
    """Six blocking jobs of 0.2 s (resource handlers, log reads) fill the default pool of a
    2-core machine (six threads) once; ISO-TP waits parked there would make them queue."""

    async def scenario() -> float:
        asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor(DEFAULT_WORKERS))
        seen = asyncio.Event()

        def sink(batch: Iterable[dict[str, Any]]) -> None:
            seen.set()

        vehicle = Vehicle(VehicleSettings(plan=PollPlan({"rpm": 0.05})), sink, simulate=True)
        task = asyncio.create_task(vehicle.run())
        try:
            await seen.wait()
            started = time.monotonic()
            await asyncio.gather(*(asyncio.to_thread(time.sleep, 0.2) for _ in range(6)))
            return time.monotonic() - started
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    elapsed = asyncio.run(asyncio.wait_for(scenario(), 20))
    assert elapsed < 0.5, elapsed  # one round of 0.2 s, with room for a loaded machine
