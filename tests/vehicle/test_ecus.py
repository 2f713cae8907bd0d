"""Finding a car's ECUs with a functional request on 0x7DF and reading each PID from the
ECU that supports it, on python-can's virtual bus (docs/vehicle.md, "Finding the ECUs");
frames that break ISO-TP are dropped and counted, and the tester goes on working."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TypeVar

import can
import pytest

from device_agent.vehicle.ecus import EcuSet, discover
from device_agent.vehicle.obd_client import NoAnswer, ObdClient
from device_agent.vehicle.pids import DecodeError
from device_agent.vehicle.simulator import EcuSimulator
from tests.vehicle.virtual_bus import virtual_nodes

T = TypeVar("T")
ENGINE = {0x0C: 1726.0, 0x0D: 60.0, 0x05: 83.0, 0x42: 12.7}
GEARBOX = {0x0D: 61.0, 0x5C: 95.0}
#: An ECU to simulate: its number, its values by PID, and more EcuSimulator options.
Ecu = tuple[int, dict[int, float], dict[str, object]]


@dataclass
class Car:
    """A tester's bus and the simulated ECUs on one virtual channel."""

    bus: can.BusABC
    notifier: can.Notifier
    ecus: list[EcuSimulator]
    inject: can.BusABC


@asynccontextmanager
async def car(*ecus: Ecu) -> AsyncIterator[Car]:
    async with virtual_nodes(3, "ecus") as (tester, ecu_node, inject):
        simulators = [
            EcuSimulator(ecu_node.bus, ecu_node.notifier, values=values, ecu=n, **options)  # type: ignore[arg-type]
            for n, values, options in ecus
        ]
        for simulator in simulators:
            simulator.start()
        try:
            yield Car(tester.bus, tester.notifier, simulators, inject.bus)
        finally:
            for simulator in simulators:
                await simulator.stop()


def run(scenario: Callable[[], Awaitable[T]]) -> T:
    return asyncio.run(asyncio.wait_for(scenario(), 20))


async def found(vehicle: Car) -> EcuSet:
    return await discover(vehicle.bus, vehicle.notifier)


def two_ecus() -> tuple[Ecu, Ecu]:
    engine: Ecu = (0, ENGINE, {"dtcs": ("P0133",)})
    gearbox: Ecu = (1, GEARBOX, {"vin": None, "dtcs": ("P0700", "P0133")})
    return engine, gearbox


def test_a_functional_request_finds_every_ecu_with_its_pids() -> None:
    async def scenario() -> tuple[list[str], dict[int, set[int]]]:
        async with car(*two_ecus()) as vehicle:
            ecus = await found(vehicle)
            try:
                return ecus.describe(), ecus.supported
            finally:
                ecus.close()

    answer_ids, supported = run(scenario)
    assert answer_ids == ["0x7E8", "0x7E9"]
    assert set(ENGINE) <= supported[0x7E8]
    assert 0x5C not in supported[0x7E8]
    assert {0x0D, 0x5C} <= supported[0x7E9]
    assert 0x0C not in supported[0x7E9]


def test_the_last_ecu_address_is_found_too() -> None:
    async def scenario() -> list[str]:
        async with car((7, {0x0C: 900.0}, {})) as vehicle:
            ecus = await found(vehicle)
            ecus.close()
            return ecus.describe()

    assert run(scenario) == ["0x7EF"]


def test_each_pid_is_read_from_the_lowest_ecu_that_supports_it() -> None:
    async def scenario() -> list[float]:
        async with car(*two_ecus()) as vehicle:
            ecus = await found(vehicle)
            try:
                return [(await ecus.read(name))[1] for name in ("speed", "oil_temp", "rpm")]
            finally:
                ecus.close()

    # speed from the engine (60), not the gearbox (61); oil temperature only the gearbox has
    assert run(scenario) == [60.0, 95.0, 1726.0]


def test_trouble_codes_of_every_ecu_each_once_and_the_engines_vin() -> None:
    async def scenario() -> tuple[list[str], str]:
        async with car(*two_ecus()) as vehicle:
            ecus = await found(vehicle)
            try:
                return await ecus.dtcs(), await ecus.vin()
            finally:
                ecus.close()

    codes, vin = run(scenario)
    assert codes == ["P0133", "P0700"]
    assert vin == "WP0ZZZ99ZTS392124"


def test_a_car_with_the_ignition_off_has_no_ecus_and_reads_say_so() -> None:
    async def scenario() -> EcuSet:
        async with car(*two_ecus()) as vehicle:
            for ecu in vehicle.ecus:
                ecu.silent = True
            ecus = await found(vehicle)
            with pytest.raises(NoAnswer):
                await ecus.read("rpm")
            with pytest.raises(NoAnswer):
                await ecus.dtcs()
            return ecus

    assert not run(scenario)


def test_an_ecu_that_stops_answering_leaves_the_others_readable() -> None:
    async def scenario() -> tuple[float, list[str]]:
        async with car(*two_ecus()) as vehicle:
            ecus = await found(vehicle)
            try:
                vehicle.ecus[0].silent = True
                with pytest.raises(NoAnswer):
                    await ecus.read("rpm")
                return (await ecus.read("oil_temp"))[1], await ecus.dtcs()
            finally:
                ecus.close()

    assert run(scenario) == (95.0, ["P0700", "P0133"])


GARBAGE = [
    bytes([0x21, 1, 2, 3, 4, 5, 6, 7]),  # a consecutive frame with no first frame
    bytes([0xF5, 0, 0, 0, 0, 0, 0, 0]),  # no such frame type
    bytes([0x30, 0, 0, 0, 0, 0, 0, 0]),  # flow control nobody asked for
    bytes([0x10, 0x40, 0x41, 0x0C, 0, 0, 0, 0]),  # a first frame announcing 64 bytes …
    bytes([0x25, 9, 9, 9, 9, 9, 9, 9]),  # … followed by the wrong sequence number
    b"",  # an empty frame
]


def test_frames_that_break_iso_tp_are_dropped_and_counted() -> None:
    async def scenario() -> tuple[int, float, float]:
        async with car((0, ENGINE, {})) as vehicle:
            client = ObdClient(vehicle.bus, vehicle.notifier)
            try:
                for data in GARBAGE:
                    vehicle.inject.send(can.Message(arbitration_id=0x7E8, data=data,
                                                    is_extended_id=False))  # fmt: skip
                await asyncio.sleep(0.3)
                errors = client.frame_errors
                rpm = (await client.read("rpm"))[1]
                speed = (await client.read("speed"))[1]
                return errors, rpm, speed
            finally:
                client.close()

    errors, rpm, speed = run(scenario)
    assert errors >= 4
    assert (rpm, speed) == (1726.0, 60.0)


def test_a_mode_01_answer_that_does_not_decode_is_a_decode_error_not_a_crash() -> None:
    async def scenario() -> None:
        async with car((0, ENGINE, {})) as vehicle:
            client = ObdClient(vehicle.bus, vehicle.notifier)
            try:
                vehicle.ecus[0].silent = True
                client.forget()
                reading = asyncio.create_task(client.read("rpm"))
                await asyncio.sleep(0.05)
                # an ISO-TP single frame `41 0C 07`: one data byte where rpm has two
                short = bytes([3, 0x41, 0x0C, 7, 0xCC, 0xCC, 0xCC, 0xCC])
                vehicle.inject.send(
                    can.Message(arbitration_id=0x7E8, data=short, is_extended_id=False)
                )
                with pytest.raises(DecodeError):
                    await reading
            finally:
                client.close()

    run(scenario)
