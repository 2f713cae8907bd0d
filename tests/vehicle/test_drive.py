"""The simulated drive (docs/vehicle.md, "The simulated drive"): its phases, its positions
along the route, its power events and the ECU values that follow the phase, with fake ECUs,
a seeded rng, a clock of one second a tick and a list for a sink."""

from __future__ import annotations

import asyncio
import itertools
import math
import random
import re
from datetime import datetime
from typing import Any, NamedTuple

import pytest

from device_agent.vehicle.drive import (
    AMBIENT_C,
    ENGINE_VALUES,
    TRANSMISSION_VALUES,
    Phase,
    SimulatedDrive,
    Timing,
)
from device_agent.vehicle.route import (
    AALBORG_LOOP,
    Route,
    bearing_deg,
    destination,
    distance_m,
)

START = 1_599_136_704.374314  # the seed's position's @ts, 2020-09-03T12:38:24.374314Z
#: The seed's examples, as AutoPi's guide shows them.
SEED_POSITION = {"utc": "06:02:24", "cog": 140.22, "nsat": 9, "alt": 34,
                 "@ts": "2020-09-03T12:38:24.374314Z", "@t": "track.pos", "sog": 0,
                 "loc": {"lat": 57.02241, "lon": 9.89919}}  # fmt: skip
SEED_POWER_ON = {"trigger": "stn", "awaken": "sleeping", "@ts": "2020-09-03T12:38:24.374314Z",
                 "@tag": "system/power/on", "@t": "event.system.power"}  # fmt: skip
TIMING = Timing(idle_ticks=3, arrived_ticks=3, engine_off_ticks=2, parked_ticks=20)


class FakeEcu:
    """An `EcuSimulator` as the drive sees it."""

    def __init__(self, values: dict[int, float]) -> None:
        self.values = dict(values)
        self.silent = False


class Tick(NamedTuple):
    """What one tick sent, and the ECUs it left behind."""

    phase: Phase
    records: list[dict[str, Any]]
    engine: dict[int, float]
    gearbox: dict[int, float]
    silent: bool


class Trip:
    """A drive on two fake ECUs, stepped by hand; what each tick sent and left behind."""

    def __init__(self, seed: int = 7, route: Any = AALBORG_LOOP) -> None:
        self.engine, self.gearbox = FakeEcu(ENGINE_VALUES), FakeEcu(TRANSMISSION_VALUES)
        self.records: list[dict[str, Any]] = []
        ticks = itertools.count()
        self.drive = SimulatedDrive(
            [self.engine, self.gearbox],
            self.records.extend,
            rng=random.Random(seed),
            route=route,
            timing=TIMING,
            clock=lambda: START + next(ticks),
        )
        self.ticks: list[Tick] = []

    def step(self) -> None:
        records = self.drive.step()
        engine, gearbox = dict(self.engine.values), dict(self.gearbox.values)
        self.ticks.append(Tick(self.drive.phase, records, engine, gearbox, self.engine.silent))

    def until(self, phase: Phase, limit: int = 2000) -> None:
        """Step until the drive is in `phase` (at most `limit` ticks)."""
        for _ in range(limit):
            self.step()
            if self.drive.phase is phase:
                return
        raise AssertionError(f"no {phase} within {limit} ticks")

    def cycle(self) -> None:
        """One whole loop: from the first ignition on to the next."""
        self.until(Phase.PARKED)
        self.until(Phase.IDLING)

    def positions(self, phase: Phase | None = None) -> list[dict[str, Any]]:
        return [
            record
            for tick in self.ticks
            for record in tick.records
            if record["@t"] == "track.pos" and phase in (None, tick.phase)
        ]


def point(record: dict[str, Any]) -> tuple[float, float]:
    return record["loc"]["lat"], record["loc"]["lon"]


def test_the_route_geometry() -> None:
    # One degree of latitude is the mean radius times π/180.
    assert distance_m((0.0, 0.0), (1.0, 0.0)) == pytest.approx(111_195.08, abs=0.01)
    assert bearing_deg((0.0, 0.0), (0.0, 1.0)) == pytest.approx(90.0)
    assert bearing_deg((0.0, 0.0), (-1.0, 0.0)) == pytest.approx(180.0)
    assert bearing_deg((0.0, 0.0), (0.0, -1.0)) == pytest.approx(270.0)
    there = destination(AALBORG_LOOP[0], 140.22, 500.0)
    assert distance_m(AALBORG_LOOP[0], there) == pytest.approx(500.0, abs=1e-6)
    assert bearing_deg(AALBORG_LOOP[0], there) == pytest.approx(140.22, abs=1e-6)
    loop = Route(AALBORG_LOOP)
    assert loop.closed
    assert 4000 < loop.length_m < 4500
    assert loop.legs[0].at(loop.legs[0].length_m + 10) == AALBORG_LOOP[1]
    assert loop.turn_deg(len(loop.legs) - 1) == 180.0  # the end: it stops
    assert not Route(AALBORG_LOOP[:3]).closed
    for bad in ([AALBORG_LOOP[0]], [AALBORG_LOOP[0], AALBORG_LOOP[0]]):
        with pytest.raises(ValueError, match="waypoints"):
            Route(bad)


def test_the_drive_starts_with_the_power_on_event_then_positions_in_the_seeds_shape() -> None:
    trip = Trip()
    trip.step()
    power, position = trip.ticks[0].records
    assert power == {**SEED_POWER_ON, "@ts": "2020-09-03T12:38:24.374314Z"}
    assert list(position) == list(SEED_POSITION)  # the same keys, in the same order
    assert list(position["loc"]) == ["lat", "lon"]
    assert point(position) == (57.02241, 9.89919)  # the seed's position: the route's start
    assert position["@ts"] == "2020-09-03T12:38:24.374314Z"
    assert position["utc"] == "12:38:24"
    assert position["sog"] == 0
    assert isinstance(position["nsat"], int)
    assert isinstance(position["alt"], int)
    assert 0 <= position["cog"] < 360
    trip.step()
    assert [r["@t"] for r in trip.ticks[1].records] == ["track.pos"]  # one position a tick
    second = datetime.fromisoformat(trip.ticks[1].records[0]["@ts"])
    assert second.timestamp() == pytest.approx(START + 1)
    for _ in range(4):
        trip.step()
    assert trip.drive.phase is Phase.DRIVING
    assert trip.ticks[-1].records[0]["sog"] > 0  # moving within a few seconds


def test_run_ticks_at_once_and_on_until_cancelled() -> None:
    async def scenario() -> list[dict[str, Any]]:
        records: list[dict[str, Any]] = []
        enough = asyncio.Event()

        def sink(batch: Any) -> None:
            records.extend(batch)
            if len(records) >= 6:
                enough.set()

        ecu = FakeEcu(ENGINE_VALUES)
        drive = SimulatedDrive([ecu], sink, rng=random.Random(1), tick_s=0.001)
        task = asyncio.create_task(drive.run())
        await enough.wait()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return records

    records = asyncio.run(asyncio.wait_for(scenario(), 10))
    assert records[0]["@tag"] == "system/power/on"
    assert {r["@t"] for r in records[1:]} == {"track.pos"}


def test_positions_follow_the_route_at_the_speed_they_report() -> None:
    trip = Trip()
    trip.until(Phase.ARRIVED)
    route = Route(AALBORG_LOOP)
    bearings = {round(leg.bearing, 2): leg for leg in route.legs}
    driving = [trip.positions(Phase.IDLING)[-1], *trip.positions(Phase.DRIVING)]
    for before, after in itertools.pairwise(driving):
        assert after["cog"] in bearings
        leg = bearings[after["cog"]]
        # On its leg: the detour through the point is under a metre.
        detour = distance_m(leg.start, point(after)) + distance_m(point(after), leg.end)
        assert detour - leg.length_m < 1.0
        if before["cog"] == after["cog"]:  # the same leg: moved at its speed for a second
            moved = distance_m(point(before), point(after))
            assert moved == pytest.approx(after["sog"] / 3.6, rel=0.01, abs=0.3)
            if moved > 5:
                assert bearing_deg(point(before), point(after)) == pytest.approx(
                    after["cog"], abs=1.0
                )
    # Every leg in order, each once, ending where the loop started.
    legs = [cog for cog, _ in itertools.groupby(p["cog"] for p in driving)]
    assert legs == [round(leg.bearing, 2) for leg in route.legs]
    assert sum(p["sog"] / 3.6 for p in driving) == pytest.approx(route.length_m, rel=0.002)
    assert distance_m(point(driving[-1]), AALBORG_LOOP[-1]) < 0.5
    speeds = [p["sog"] for p in driving]
    assert max(speeds) <= 57.0
    assert sum(speeds) / len(speeds) > 25
    standing = trip.positions(Phase.ARRIVED)
    assert standing
    assert all(p["sog"] == 0 for p in standing)
    assert all(point(p) == point(driving[-1]) for p in standing)


def test_the_car_slows_for_corners() -> None:
    trip = Trip()
    trip.until(Phase.ARRIVED)
    route = Route(AALBORG_LOOP)
    sharpest = max(range(len(route.legs) - 1), key=route.turn_deg)  # 84° onto the last leg
    corner = route.legs[sharpest].end
    near = [p["sog"] for p in trip.positions(Phase.DRIVING) if distance_m(point(p), corner) < 15]
    assert near
    assert min(near) < 25
    cruise = [p["sog"] for p in trip.positions(Phase.DRIVING) if p["sog"] > 40]
    assert cruise  # and faster between corners


def test_ignition_off_sends_the_sleep_event_and_silences_every_ecu_until_it_is_on() -> None:
    trip = Trip()
    trip.until(Phase.ENGINE_OFF)
    tick = trip.ticks[-1]
    assert tick.engine[0x0C] == 0  # the engine stopped, the ignition still on
    assert not tick.silent
    assert [r["@t"] for r in tick.records] == ["track.pos"]
    trip.until(Phase.PARKED)
    records = trip.ticks[-1].records
    assert records == [
        {
            "reason": "engine_off",
            "@ts": records[0]["@ts"],
            "@tag": "system/power/sleep",
            "@t": "event.system.power",
        }
    ]
    assert trip.engine.silent
    assert trip.gearbox.silent
    sent = len(trip.records)
    for _ in range(TIMING.parked_ticks - 1):
        trip.step()
        assert trip.drive.phase is Phase.PARKED
        assert trip.engine.silent
        assert trip.gearbox.silent
    assert len(trip.records) == sent  # parked: no positions, nothing at all
    trip.step()
    assert trip.drive.phase is Phase.IDLING
    assert not trip.engine.silent
    assert not trip.gearbox.silent
    tags = [r.get("@tag", r["@t"]) for r in trip.ticks[-1].records]
    assert tags == ["system/power/on", "track.pos"]


def test_the_phases_loop_with_their_durations() -> None:
    trip = Trip()
    trip.cycle()
    trip.cycle()
    phases = [tick.phase for tick in trip.ticks]
    runs = [(phase, len(list(group))) for phase, group in itertools.groupby(phases)]
    assert [phase for phase, _ in runs] == [
        Phase.IDLING, Phase.DRIVING, Phase.ARRIVED, Phase.ENGINE_OFF, Phase.PARKED,
        Phase.IDLING, Phase.DRIVING, Phase.ARRIVED, Phase.ENGINE_OFF, Phase.PARKED,
        Phase.IDLING,
    ]  # fmt: skip
    durations = dict(runs[:5])
    assert durations[Phase.IDLING] == TIMING.idle_ticks
    assert durations[Phase.ARRIVED] == TIMING.arrived_ticks
    assert durations[Phase.ENGINE_OFF] == TIMING.engine_off_ticks
    assert durations[Phase.PARKED] == TIMING.parked_ticks
    assert 200 < durations[Phase.DRIVING] < 600  # 4.2 km at town speeds
    powers = [r["@tag"] for r in trip.records if r["@t"] == "event.system.power"]
    assert powers == ["system/power/on", "system/power/sleep"] * 2 + ["system/power/on"]


def test_the_battery_charges_only_while_the_engine_runs() -> None:
    trip = Trip()
    trip.cycle()
    running = [tick.engine[0x42] for tick in trip.ticks if tick.phase.engine]
    stopped = [tick.engine[0x42] for tick in trip.ticks if not tick.phase.engine]
    assert running
    assert stopped
    assert all(13.8 <= volts <= 14.4 for volts in running)
    assert all(12.3 <= volts < 13.0 for volts in stopped)
    assert stopped == sorted(stopped, reverse=True)  # resting, it sags slowly
    assert stopped[-1] < stopped[0]
    assert len(set(running)) > 5  # the alternator's output wanders


def test_temperatures_rise_while_the_engine_runs_and_fall_when_parked() -> None:
    trip = Trip()
    trip.until(Phase.ENGINE_OFF)
    first, last = trip.ticks[0], trip.ticks[-1]
    assert first.engine[0x05] < AMBIENT_C + 2  # a cold start
    assert last.engine[0x05] > 75  # warm after the drive
    coolant = [tick.engine[0x05] for tick in trip.ticks if tick.phase.engine]
    assert coolant == sorted(coolant)
    assert last.gearbox[0x5C] > first.gearbox[0x5C] + 30  # the gearbox oil warms too
    trip.until(Phase.IDLING)
    parked = [tick.engine[0x05] for tick in trip.ticks if tick.phase is Phase.PARKED]
    assert parked == sorted(parked, reverse=True)
    assert parked[-1] < parked[0]
    assert parked[-1] > 60  # slowly: twenty seconds are not enough to cool an engine


def test_rpm_load_and_fuel_follow_the_phase() -> None:
    trip = Trip()
    trip.cycle()
    for phase, _, engine, _, _ in trip.ticks:
        rpm, speed = engine[0x0C], engine[0x0D]
        if not phase.engine:
            assert (rpm, speed, engine[0x04]) == (0, 0, 0)
        elif speed == 0:
            assert 750 <= rpm <= 810  # idling
        else:
            assert 750 <= rpm <= 3300
            # In one of the five gears (7.5 to 34 km/h a thousand rpm), or slipping the clutch.
            assert rpm >= speed / 34 * 1000 - 25
        assert 0 <= engine[0x04] <= 100
        assert 0 <= engine[0x11] <= 100
    fuel = [tick.engine[0x2F] for tick in trip.ticks]
    assert fuel == sorted(fuel, reverse=True)
    assert fuel[-1] < fuel[0] - 0.3
    parked = [tick.engine[0x2F] for tick in trip.ticks if tick.phase is Phase.PARKED]
    assert len(set(parked)) == 1  # no fuel burnt with the engine off


def test_each_value_goes_into_every_ecu_holding_its_pid() -> None:
    trip = Trip()
    trip.until(Phase.DRIVING)
    for _ in range(20):
        trip.step()
    engine, gearbox = trip.ticks[-1].engine, trip.ticks[-1].gearbox
    assert engine[0x0D] == gearbox[0x0D] > 0
    assert set(engine) == set(ENGINE_VALUES)  # no PID the ECU does not hold
    assert set(gearbox) == set(TRANSMISSION_VALUES)
    # The run time counts from the ignition on, though no ECU here holds its PID.
    assert trip.drive.values[0x1F] == len(trip.ticks)


def test_an_open_route_is_driven_back_the_next_time() -> None:
    there_and_back = AALBORG_LOOP[:3]
    trip = Trip(route=there_and_back)
    trip.until(Phase.PARKED)
    out = trip.positions()
    trip.until(Phase.DRIVING)
    back = trip.positions()[len(out) :]
    assert point(back[0]) == point(out[-1]) == there_and_back[-1]  # no jump
    backward = bearing_deg(there_and_back[2], there_and_back[1])
    assert back[0]["cog"] == pytest.approx(backward, abs=0.01)


def test_the_utc_field_is_the_clock_of_the_tick() -> None:
    trip = Trip()
    for _ in range(3):
        trip.step()
    utcs = [p["utc"] for p in trip.positions()]
    assert all(re.fullmatch(r"\d\d:\d\d:\d\d", utc) for utc in utcs)
    assert utcs == ["12:38:24", "12:38:25", "12:38:26"]
    assert math.isclose(trip.drive.step_s, 1.0)
