"""Polling: records with the reading's time, rates that back off from a silent ECU and
recover, malformed answers counted and skipped; and against the simulator on a virtual bus."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterable
from typing import Any

import can
import pytest

from device_agent.vehicle import pids
from device_agent.vehicle.obd_client import NoAnswer, ObdClient
from device_agent.vehicle.pids import DecodeError
from device_agent.vehicle.poller import Poller, PollPlan
from device_agent.vehicle.simulator import EcuSimulator


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class ScriptedReader:
    """Answers from a script: a value, NoAnswer, or DecodeError."""

    def __init__(self, *outcomes: Any) -> None:
        self.outcomes = list(outcomes)

    async def read(self, key: str | int) -> tuple[pids.Pid, float]:
        outcome = self.outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return pids.lookup(key), outcome


def poll(poller: Poller, name: str) -> dict[str, Any] | None:
    return asyncio.run(poller.poll_once(name))


def test_a_reading_is_a_record_with_its_time() -> None:
    records: list[dict[str, Any]] = []
    poller = Poller(ScriptedReader(12.6), records.extend, PollPlan({"control_module_voltage": 10}))
    record = poll(poller, "control_module_voltage")
    assert record is not None
    assert record["@ts"].endswith("Z")
    # the seed's obd.bat shape: voltage, level and state (level = (12.6 - 11.9) / 0.8)
    assert record == {"@t": "obd.bat", "@ts": record["@ts"], "voltage": 12.6, "level": 88,
                      "state": "discharging"}  # fmt: skip
    assert records == [record]


def test_a_silent_ecu_is_asked_less_and_less_then_normally_again() -> None:
    clock = Clock()
    reader = ScriptedReader(*[NoAnswer("silent")] * 6, 800.0, 800.0, 800.0, 800.0, 800.0)
    poller = Poller(reader, lambda _: None, PollPlan({"rpm": 1.0}, max_backoff=16), clock)
    seen = []
    for _ in range(6):
        poll(poller, "rpm")
        seen.append(poller.intervals["rpm"])
    assert seen == [2.0, 4.0, 8.0, 16.0, 16.0, 16.0]  # doubling, capped at 16x
    for _ in range(5):
        poll(poller, "rpm")
    assert poller.intervals["rpm"] == 1.0  # halved back on every good answer
    assert (poller.stats.unanswered, poller.stats.readings) == (6, 5)


def test_malformed_answers_are_counted_and_skipped() -> None:
    records: list[dict[str, Any]] = []
    poller = Poller(
        ScriptedReader(DecodeError("short"), 60.0), records.extend, PollPlan({"speed": 1})
    )
    assert poll(poller, "speed") is None
    assert poll(poller, "speed") is not None
    assert poller.stats.malformed == 1
    assert len(records) == 1


@pytest.mark.parametrize(
    ("text", "error"),
    [("warp=1", KeyError), ("rpm=fast", ValueError), ("rpm=0", ValueError), ("", ValueError)],
)
def test_a_bad_plan_is_refused(text: str, error: type[Exception]) -> None:
    with pytest.raises(error):
        PollPlan.parse(text)


def test_a_plan_by_name_or_number() -> None:
    assert PollPlan.parse("rpm=0.5, 0x0D=2,coolant_temp").rates == {
        "rpm": 0.5,
        "speed": 2.0,
        "coolant_temp": 1.0,
    }


def test_polling_the_simulated_ecu_fills_the_sink() -> None:
    async def scenario() -> list[dict[str, Any]]:
        channel = f"poll-{uuid.uuid4().hex}"
        tester_bus = can.Bus(interface="virtual", channel=channel)
        ecu_bus = can.Bus(interface="virtual", channel=channel)
        loop = asyncio.get_running_loop()
        notifiers = [can.Notifier(bus, [], loop=loop) for bus in (tester_bus, ecu_bus)]
        ecu = EcuSimulator(ecu_bus, notifiers[1], values={0x0C: 900.0, 0x42: 14.2})
        ecu.start()
        client = ObdClient(tester_bus, notifiers[0])
        records: list[dict[str, Any]] = []
        enough = asyncio.Event()

        def sink(batch: Iterable[dict[str, Any]]) -> None:
            records.extend(batch)
            if len(records) >= 4:
                enough.set()

        poller = Poller(client, sink, PollPlan({"rpm": 0.1, "control_module_voltage": 0.1}))
        task = asyncio.create_task(poller.run())
        try:
            await enough.wait()
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            client.close()
            await ecu.stop()
            for notifier in notifiers:
                notifier.stop()
            tester_bus.shutdown()
            ecu_bus.shutdown()
        return records

    records = asyncio.run(asyncio.wait_for(scenario(), 20))
    kinds = {(record["@t"], next(k for k in record if not k.startswith("@"))) for record in records}
    assert kinds == {("obd.rpm", "value"), ("obd.bat", "voltage")}
    assert {record.get("state") for record in records if record["@t"] == "obd.bat"} == {"charging"}
    assert {record.get("value", record.get("voltage")) for record in records} == {900.0, 14.2}
