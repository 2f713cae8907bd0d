"""Audit: `obd.query` and friends as the Local API and the cloud's relay run them
(docs/device-side.md, "Errors"): whatever the ECU or the caller sends, the command ends in
a `CommandError` (a 4xx, or the 503/504 docs/vehicle.md names), never in another exception,
which the Local API turns into a 500 and the relay into a 502."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import can
import pytest

from device_agent.commands import CommandError, Commands
from device_agent.vehicle.poller import PollPlan
from device_agent.vehicle.runtime import Vehicle, VehicleSettings
from device_agent.vehicle.simulator import EcuSimulator

#: A bound for an error message that names what the caller sent.
MAX_MESSAGE = 1000


class ShortRpm(EcuSimulator):
    """An engine whose rpm answer is `41 0C 07`: one data byte where rpm has two."""

    def answer(self, request: bytes) -> bytes | None:
        if request[:2] == bytes([0x01, 0x0C]):
            return bytes([0x41, 0x0C, 0x07])
        return super().answer(request)


async def until(condition: Callable[[], Awaitable[bool]], what: str, within: float = 10) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not await condition():
        assert asyncio.get_running_loop().time() < deadline, what
        await asyncio.sleep(0.02)


def test_an_answer_that_does_not_decode_is_a_command_error(tmp_path: Path) -> None:
    async def scenario() -> None:
        channel = f"audit-{uuid.uuid4().hex}"
        ecu_bus = can.Bus(interface="virtual", channel=channel)
        ecu_notifier = can.Notifier(ecu_bus, [], loop=asyncio.get_running_loop())
        engine = ShortRpm(ecu_bus, ecu_notifier, values={0x0C: 800.0, 0x0D: 0.0})
        engine.start()
        settings = VehicleSettings("virtual", channel, plan=PollPlan({"speed": 60}))
        vehicle = Vehicle(settings, lambda _: None)
        commands = Commands(tmp_path)
        commands.register("obd.query", vehicle.query)
        task = asyncio.create_task(vehicle.run())

        async def found() -> bool:
            return bool((await vehicle.status())["ecus"])

        try:
            await until(found, "the engine was not found")
            with pytest.raises(CommandError):
                await commands.execute("obd.query", ["rpm"], {})
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await engine.stop()
            ecu_notifier.stop()
            ecu_bus.shutdown()

    asyncio.run(asyncio.wait_for(scenario(), 20))


@pytest.mark.parametrize(
    "pid", ["x" * 100_000, "9" * 5000, 16**1000], ids=["long name", "long number", "huge int"]
)
def test_an_unknown_pid_is_not_echoed_whole(tmp_path: Path, pid: Any) -> None:
    """The 400 repeats the argument in full: a 1 MiB body gives a 1 MiB error, and the
    command log (which keeps "never the arguments", device_agent/cli.py) gets it too."""
    vehicle = Vehicle(VehicleSettings("virtual", "unused"), lambda _: None)
    commands = Commands(tmp_path)
    commands.register("obd.query", vehicle.query)
    with pytest.raises(CommandError) as refused:
        asyncio.run(commands.execute("obd.query", [pid], {}))
    assert refused.value.status == 400
    assert len(str(refused.value)) < MAX_MESSAGE, len(str(refused.value))
