"""`produce`, the dongle's own records with `--simulate`: online once, then the modem's data
usage; the vehicle's records (positions, battery, power events) are the drive's, not its
(docs/vehicle.md, "The simulated drive")."""

from __future__ import annotations

import asyncio
import inspect
import itertools
import random
from collections.abc import Iterable
from typing import Any

from device_agent import simulated_telemetry
from device_agent.simulated_telemetry import SimulatedModem, produce

START = 1_614_157_332.192479  # the seed's minion record's @ts, 2021-02-24T09:02:12.192479Z


class ListOutbox:
    """An outbox that keeps each batch, and says when it holds `wanted` records."""

    def __init__(self, wanted: int) -> None:
        self.batches: list[list[dict[str, Any]]] = []
        self.wanted = wanted
        self.enough = asyncio.Event()

    def append(self, records: Iterable[dict[str, Any]]) -> int:
        batch = list(records)
        self.batches.append(batch)
        if sum(map(len, self.batches)) >= self.wanted:
            self.enough.set()
        return len(batch)


def run_until(wanted: int) -> list[list[dict[str, Any]]]:
    async def scenario() -> list[list[dict[str, Any]]]:
        outbox = ListOutbox(wanted)
        modem = SimulatedModem(random.Random(3))
        task = asyncio.create_task(produce(outbox, modem, every_s=0.001, clock=lambda: START))
        await outbox.enough.wait()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return outbox.batches

    return asyncio.run(asyncio.wait_for(scenario(), 10))


def test_produce_says_online_once_then_reports_the_data_usage() -> None:
    batches = run_until(5)
    records = [record for batch in batches for record in batch]
    assert records[0] == {
        "@tag": "system/minion/online",
        "@t": "event.system.minion",
        "@ts": "2021-02-24T09:02:12.192479Z",
    }
    usage = records[1:]
    assert len(usage) >= 4
    assert {r["@t"] for r in usage} == {"ec2x.data_usage"}
    assert all(list(r) == ["sent", "recv", "@t", "@ts"] for r in usage)
    for before, after in itertools.pairwise(usage):
        assert after["sent"] > before["sent"]
        assert after["recv"] > before["recv"]


def test_produce_makes_none_of_the_vehicles_records() -> None:
    batches = run_until(8)
    kinds = {record["@t"] for batch in batches for record in batch}
    assert kinds == {"event.system.minion", "ec2x.data_usage"}
    assert not hasattr(simulated_telemetry, "SimulatedVehicle")  # the old demo car is gone


def test_produce_keeps_the_signature_the_cli_calls() -> None:
    parameters = inspect.signature(produce).parameters
    assert next(iter(parameters)) == "outbox"
    assert all(p.default is not p.empty for p in list(parameters.values())[1:])
    assert simulated_telemetry.DATA_USAGE_EVERY_S == 60.0
