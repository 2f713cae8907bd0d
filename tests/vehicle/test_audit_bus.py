"""Audit: the vehicle's bus when the world misbehaves (docs/vehicle.md, "In the agent",
"ISO-TP"): a bus that dies under a session, a vehicle stopped in the middle of finding the
ECUs, an ECU that asks for more time before it answers."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import can
import pytest

from device_agent.vehicle import runtime
from device_agent.vehicle.obd_client import ObdClient
from device_agent.vehicle.poller import PollPlan
from device_agent.vehicle.runtime import Vehicle, VehicleSettings
from device_agent.vehicle.simulator import EcuSimulator
from tests.vehicle.virtual_bus import Node, virtual_nodes

VIN = "WP0ZZZ99ZTS392124"


async def until(condition: Callable[[], Awaitable[bool]], what: str, within: float = 10) -> None:
    """Wait for `condition`, failing with `what` once `within` seconds have passed."""
    deadline = asyncio.get_running_loop().time() + within
    while not await condition():
        assert asyncio.get_running_loop().time() < deadline, what
        await asyncio.sleep(0.02)


# python-can's Notifier thread re-raises the bus's error after handing it to the loop,
# whatever the vehicle does with it: that thread's end is expected here.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_bus_that_fails_mid_session_is_counted_and_opened_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The tester's bus is shut down under a polling session (a USB adapter pulled out, a
    socketcan interface gone down). python-can's Notifier thread dies with the error, the
    poller's requests time out for ever, and `bus_failures` stays 0: the vehicle never
    learns the bus failed, so it never opens it again."""
    monkeypatch.setattr(runtime, "RETRY_FIRST_S", 0.05)
    opened: list[can.BusABC] = []
    real_bus = can.Bus

    def recording_bus(*args: Any, **kwargs: Any) -> can.BusABC:
        bus = real_bus(*args, **kwargs)
        opened.append(bus)
        return bus

    monkeypatch.setattr(can, "Bus", recording_bus)

    async def scenario() -> dict[str, Any]:
        vehicle = Vehicle(VehicleSettings(plan=PollPlan({"rpm": 0.1})), lambda _: None,
                          simulate=True)  # fmt: skip
        task = asyncio.create_task(vehicle.run())

        async def polling() -> bool:
            return (await vehicle.status())["readings"] >= 2

        async def reopened() -> bool:
            return vehicle.failures >= 1 and len(opened) > sessions

        try:
            await until(polling, "the simulated car was not polled")
            sessions = len(opened)
            opened[0].shutdown()  # the tester's bus (the simulated ECUs' is the second)
            try:
                await until(reopened, "the failed bus was not noticed")
            except AssertionError:
                raise AssertionError(f"not noticed: {await vehicle.status()}") from None
            await until(polling, "the reopened bus was not polled")
            return await vehicle.status()
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            for bus in opened:
                bus.shutdown()

    status = asyncio.run(asyncio.wait_for(scenario(), 30))
    assert status["bus_failures"] >= 1


def test_stopping_the_vehicle_while_it_finds_the_ecus_leaves_no_threads(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Cancelled during the functional request's window, `discover` closes only its
    sender: the eight ObdClients' can-isotp stacks (two threads each) and their waiting
    threads live on, 24 threads per cancelled round."""
    before = threading.active_count()

    async def scenario() -> int:
        started = asyncio.Event()
        discover = runtime.discover

        async def announced(*args: Any, **kwargs: Any) -> Any:
            started.set()
            return await discover(*args, **kwargs)

        monkeypatch.setattr(runtime, "discover", announced)
        for _ in range(3):
            started.clear()
            settings = VehicleSettings("virtual", f"no-car-{uuid.uuid4().hex}")
            task = asyncio.create_task(Vehicle(settings, lambda _: None).run())
            await started.wait()
            await asyncio.sleep(0.1)  # inside the 0.3 s the ECUs have to answer
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        monkeypatch.undo()

        async def settled() -> bool:
            return threading.active_count() <= before

        with_leaks = threading.active_count()
        try:
            await until(settled, "threads left", within=3)
        except AssertionError:
            return with_leaks
        return threading.active_count()

    after = asyncio.run(asyncio.wait_for(scenario(), 30))
    names = sorted({thread.name.split(" ")[-1] for thread in threading.enumerate()})
    assert after <= before, f"{after - before} threads left: {names}"


class Pending(EcuSimulator):
    """An ECU that answers the VIN request with `7F 09 78` (request received, response
    pending: ISO 15765-4 lets an ECU take up to P2* = 5 s that way) and the VIN 0.2 s
    later."""

    async def _serve(self, ear: Any) -> None:
        while True:
            request = await ear.recv(0.2)
            if request is None:
                continue
            if request[:2] == bytes([0x09, 0x02]):
                self._channel.send(bytes([0x7F, 0x09, 0x78]))
                await asyncio.sleep(0.2)
            answer = self.answer(request)
            if answer is not None:
                self._channel.send(answer)


@asynccontextmanager
async def pending_ecu() -> AsyncIterator[ObdClient]:
    async with virtual_nodes(2, "pending") as (tester, ecu_node):
        ecu = Pending(ecu_node.bus, ecu_node.notifier, values={0x0C: 800.0}, vin=VIN)
        ecu.start()
        client = ObdClient(tester.bus, tester.notifier)
        try:
            yield client
        finally:
            client.close()
            await ecu.stop()


def test_an_ecu_that_asks_for_more_time_is_waited_for() -> None:
    """`7F 09 78` is not a refusal but "wait": today it is a NoAnswer, and the VIN that
    follows is left in the queue as a late answer."""

    async def scenario() -> str:
        async with pending_ecu() as client:
            return await client.vin()

    assert asyncio.run(asyncio.wait_for(scenario(), 20)) == VIN


def queued(client: ObdClient) -> int:
    """Whole payloads waiting on the client's channel, unasked (can-isotp's queue)."""
    return client._channel._stack.rx_queue.qsize()


def test_answers_nobody_asked_for_do_not_pile_up_on_an_ecu_that_is_not_polled() -> None:
    """Another tester on the bus (a workshop tool, the car's gateway) asks the gearbox and
    it answers on 0x7E9. The agent reads speed from the engine and, with the default plan,
    never asks the gearbox: each of those answers stays queued on its channel for good
    (only a request to that ECU clears it), memory growing with the traffic."""
    flood = 5000

    async def scenario() -> int:
        async with virtual_nodes(3, "flood") as (tester, ecu_node, other):
            return await flooded(tester, ecu_node, other.bus)

    async def flooded(tester: Node, ecu_node: Node, other_tester: can.BusABC) -> int:
        loop = asyncio.get_running_loop()
        engine = EcuSimulator(ecu_node.bus, ecu_node.notifier, values={0x0C: 800.0, 0x0D: 0.0})
        gearbox = EcuSimulator(ecu_node.bus, ecu_node.notifier,
                               values={0x0D: 0.0, 0x5C: 90.0}, vin=None, ecu=1)  # fmt: skip
        for ecu in (engine, gearbox):
            ecu.start()
        ecus = await runtime.discover(tester.bus, tester.notifier)
        try:
            assert ecus.describe() == ["0x7E8", "0x7E9"]
            answer = bytes([0x03, 0x41, 0x5C, 0x82, 0xCC, 0xCC, 0xCC, 0xCC])
            for n in range(flood):
                other_tester.send(can.Message(arbitration_id=0x7E9, data=answer,
                                              is_extended_id=False))  # fmt: skip
                if n % 500 == 0:
                    await asyncio.sleep(0)
            last, steady_since = -1, loop.time()
            while loop.time() - steady_since < 0.5 and last < flood:
                await asyncio.sleep(0.05)
                now = queued(ecus.clients[1])
                if now != last:
                    last, steady_since = now, loop.time()
            return last
        finally:
            ecus.close()
            for ecu in (engine, gearbox):
                await ecu.stop()

    waiting = asyncio.run(asyncio.wait_for(scenario(), 60))
    assert waiting < 100, f"{waiting} answers nobody asked for are kept"
