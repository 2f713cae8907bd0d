"""The OBD-II tester against the simulated ECU on python-can's virtual bus, through ISO-TP."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TypeVar

import pytest

from device_agent.vehicle.obd_client import NoAnswer, ObdClient
from device_agent.vehicle.simulator import EcuSimulator
from tests.vehicle.virtual_bus import virtual_nodes

T = TypeVar("T")
VALUES = {0x0C: 1726.0, 0x0D: 60.0, 0x05: 83.0, 0x42: 12.7, 0x2F: 20.0, 0x5C: 90.0}


@asynccontextmanager
async def vehicle(**options: object) -> AsyncIterator[tuple[ObdClient, EcuSimulator]]:
    """A tester and an ECU on one fresh virtual channel."""
    async with virtual_nodes(2) as (tester, ecu_node):
        ecu = EcuSimulator(ecu_node.bus, ecu_node.notifier, values=VALUES,
                           dtcs=("P0133", "U0100"), **options)  # type: ignore[arg-type]  # fmt: skip
        ecu.start()
        client = ObdClient(tester.bus, tester.notifier, timeout=0.5)
        try:
            yield client, ecu
        finally:
            client.close()
            await ecu.stop()


def run(scenario: Callable[[], Awaitable[T]]) -> T:
    return asyncio.run(asyncio.wait_for(scenario(), 20))


def test_current_values_come_back_as_the_ecu_has_them() -> None:
    async def scenario() -> list[tuple[str, float]]:
        async with vehicle() as (client, _):
            return [
                (entry.name, value)
                for entry, value in [await client.read(key) for key in ("rpm", "speed", 0x42)]
            ]

    assert run(scenario) == [("rpm", 1726.0), ("speed", 60.0), ("control_module_voltage", 12.7)]


def test_supported_pids_are_discovered_across_maps() -> None:
    async def scenario() -> set[int]:
        async with vehicle() as (client, _):
            return await client.supported()

    found = run(scenario)
    assert set(VALUES) <= found  # 0x42 and 0x5C live in the maps of 0x40
    assert {0x20, 0x40} <= found  # the maps that say the next one exists


def test_the_vin_arrives_in_several_frames() -> None:
    async def scenario() -> str:
        async with vehicle(vin="1HGCM82633A004352") as (client, _):
            return await client.vin()

    assert run(scenario) == "1HGCM82633A004352"


def test_stored_trouble_codes() -> None:
    async def scenario() -> list[str]:
        async with vehicle() as (client, _):
            return await client.dtcs()

    assert run(scenario) == ["P0133", "U0100"]


def test_a_pid_the_ecu_does_not_have_is_refused_not_a_crash() -> None:
    async def scenario() -> None:
        async with vehicle() as (client, _):
            with pytest.raises(NoAnswer, match="refused"):
                await client.read("maf")

    run(scenario)


def test_a_silent_ecu_times_out_quickly() -> None:
    async def scenario() -> float:
        async with vehicle() as (client, ecu):
            ecu.silent = True
            started = time.monotonic()
            with pytest.raises(NoAnswer, match="no answer"):
                await client.read("rpm")
            return time.monotonic() - started

    assert run(scenario) < 2.0
