"""What reading a vehicle costs the agent: OBD-II round trips through ISO-TP, the VIN's
multi-frame answer, finding the ECUs, DBC decoding, and the steady CPU of a polled car.

Everything runs in one process on python-can's virtual bus, against the ECU simulator
(device_agent/vehicle/simulator.py), as `thingwire agent --simulate` does; a real bus adds
its wire time (a frame is about 0.25 ms at 500 kbit/s) but not CPU. What is measured:

- **Round trips**: `ObdClient.read("rpm")` one after another: readings a second, latency
  percentiles, and the process's CPU per reading (tester, simulator and can-isotp's threads
  together: an upper bound for the tester alone).
- **VIN**: mode 09 PID 02, three frames and a flow control each way.
- **Discovery**: one functional `01 00` with two ECUs answering, and with none.
- **DBC decoding**: `SignalRecorder.on_frame` over the simulated car's broadcast frames,
  in process (no bus), frames a second.
- **Steady cost**: `Vehicle(simulate=True)` with the default plan for `--seconds`: the CPU
  share of one core for the whole simulated car and its agent side.

    .venv/bin/python -m bench.vehicle [--readings 2000] [--seconds 20] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import can

from device_agent.vehicle.broadcast import SIMULATED_DBC, SignalRecorder, SignalRule
from device_agent.vehicle.drive import ENGINE_VALUES, TRANSMISSION_VALUES
from device_agent.vehicle.ecus import discover
from device_agent.vehicle.obd_client import ObdClient
from device_agent.vehicle.runtime import Vehicle, VehicleSettings
from device_agent.vehicle.simulator import EcuSimulator


@asynccontextmanager
async def simulated_car(ecus: int = 2) -> AsyncIterator[tuple[can.BusABC, can.Notifier]]:
    """The tester's bus and notifier on a fresh channel where `ecus` simulated ECUs answer."""
    channel = f"bench-{uuid.uuid4().hex}"
    loop = asyncio.get_running_loop()
    tester_bus = can.Bus(interface="virtual", channel=channel)
    ecu_bus = can.Bus(interface="virtual", channel=channel)
    tester_notifier = can.Notifier(tester_bus, [], loop=loop)
    ecu_notifier = can.Notifier(ecu_bus, [], loop=loop)
    simulators = [
        EcuSimulator(ecu_bus, ecu_notifier, values=ENGINE_VALUES),
        EcuSimulator(ecu_bus, ecu_notifier, values=TRANSMISSION_VALUES, vin=None, ecu=1),
    ][:ecus]
    for simulator in simulators:
        simulator.start()
    try:
        yield tester_bus, tester_notifier
    finally:
        for simulator in simulators:
            await simulator.stop()
        for notifier in (tester_notifier, ecu_notifier):
            notifier.stop()
        for bus in (tester_bus, ecu_bus):
            bus.shutdown()


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def round_trips(readings: int) -> dict[str, float]:
    async with simulated_car(1) as (bus, notifier):
        client = ObdClient(bus, notifier)
        try:
            await client.read("rpm")  # the threads started, the first frame through
            latencies: list[float] = []
            cpu = time.process_time()
            started = time.perf_counter()
            for _ in range(readings):
                before = time.perf_counter()
                await client.read("rpm")
                latencies.append(time.perf_counter() - before)
            wall = time.perf_counter() - started
            cpu = time.process_time() - cpu
            vins: list[float] = []
            for _ in range(max(20, readings // 20)):
                before = time.perf_counter()
                await client.vin()
                vins.append(time.perf_counter() - before)
        finally:
            client.close()
    return {
        "readings_per_s": readings / wall,
        "p50_ms": 1000 * percentile(latencies, 0.5),
        "p99_ms": 1000 * percentile(latencies, 0.99),
        "cpu_us_per_reading": 1e6 * cpu / readings,
        "vin_p50_ms": 1000 * statistics.median(vins),
    }


async def discovery(rounds: int) -> dict[str, float]:
    found: list[float] = []
    silent: list[float] = []
    for ecus, times in ((2, found), (0, silent)):
        async with simulated_car(ecus) as (bus, notifier):
            for _ in range(rounds):
                before = time.perf_counter()
                ecu_set = await discover(bus, notifier)
                times.append(time.perf_counter() - before)
                assert len(ecu_set.clients) == ecus, ecu_set.describe()
                ecu_set.close()
    return {
        "discover_two_ms": 1000 * statistics.median(found),
        "discover_none_ms": 1000 * statistics.median(silent),
    }


def dbc_decoding(frames: int) -> float:
    rules = {"EngineSpeed": SignalRule(100, 5), "Speed": SignalRule(2, 5)}
    recorder = SignalRecorder.from_file(SIMULATED_DBC, lambda _: None, rules)
    engine = recorder.database.get_message_by_name("ENGINE_STATUS")
    speed = recorder.database.get_message_by_name("VEHICLE_SPEED")
    batch = [
        can.Message(
            arbitration_id=engine.frame_id,
            data=engine.encode({"EngineSpeed": 800 + i % 50, "CoolantTemp": 90, "ThrottlePos": 14}),
            is_extended_id=False,
        )
        for i in range(50)
    ] + [
        can.Message(
            arbitration_id=speed.frame_id,
            data=speed.encode({"Speed": i % 80, "Odometer": 12_345.0}),
            is_extended_id=False,
        )
        for i in range(50)
    ]
    started = time.perf_counter()
    for i in range(frames):
        recorder.on_frame(batch[i % len(batch)])
    return frames / (time.perf_counter() - started)


async def steady_cost(seconds: float) -> dict[str, float]:
    records: list[dict[str, Any]] = []
    vehicle = Vehicle(VehicleSettings(), records.extend, simulate=True)
    task = asyncio.create_task(vehicle.run())
    try:
        await asyncio.sleep(3)  # discovered, the threads and the drive under way
        records.clear()
        cpu = time.process_time()
        await asyncio.sleep(seconds)
        cpu = time.process_time() - cpu
        status = await vehicle.status()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    return {
        "steady_cpu_pct": 100 * cpu / seconds,
        "steady_records_per_s": len(records) / seconds,
        "steady_unanswered": float(status["unanswered"]),
    }


async def measure(readings: int, seconds: float) -> dict[str, float]:
    figures = await round_trips(readings)
    figures |= await discovery(5 if readings < 1000 else 10)
    figures["dbc_frames_per_s"] = dbc_decoding(readings * 10)
    figures |= await steady_cost(seconds)
    return figures


UNITS = {
    "readings_per_s": "readings/s",
    "p50_ms": "ms",
    "p99_ms": "ms",
    "cpu_us_per_reading": "µs CPU",
    "vin_p50_ms": "ms",
    "discover_two_ms": "ms",
    "discover_none_ms": "ms",
    "dbc_frames_per_s": "frames/s",
    "steady_cpu_pct": "% of a core",
    "steady_records_per_s": "records/s",
    "steady_unanswered": "requests",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--readings", type=int, default=2000)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--quick", action="store_true", help="500 readings, 5 s steady")
    args = parser.parse_args()
    readings, seconds = (500, 5.0) if args.quick else (args.readings, args.seconds)
    figures = asyncio.run(measure(readings, seconds))
    for name, value in figures.items():
        print(f"{name:22} {value:12.2f} {UNITS[name]}")
    print(
        json.dumps(
            {
                "bench": "vehicle",
                "figures": [
                    {"name": name, "value": round(value, 3), "unit": UNITS[name], "target": None}
                    for name, value in figures.items()
                ],
            }
        )
    )


if __name__ == "__main__":
    main()
