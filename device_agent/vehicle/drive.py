"""The simulated car's drive: what `thingwire agent --simulate` reads from its ECUs, and
the records a dongle makes beside the CAN bus (GPS positions, power events).

A state machine that loops (docs/vehicle.md, "The simulated drive"): the ignition goes on
and the engine idles, the car drives its route and stops at the end, the engine goes off,
then the ignition, and the car stays parked a while before the next drive. Each tick moves
the ECUs' values with the phase: the battery charges above its resting 12.6 V only while
the engine runs, the coolant warms toward 90 °C and cools when it stops, the fuel drops.
"""

from __future__ import annotations

import asyncio
import enum
import math
import random
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from device_agent.records import timestamp
from device_agent.vehicle.route import AALBORG_LOOP, Point, Route

__all__ = [
    "ENGINE_VALUES",
    "TRANSMISSION_VALUES",
    "Phase",
    "SimulatedDrive",
    "SimulatedEcu",
    "Timing",
]

#: The air around the car, °C: where the temperatures start and cool back to.
AMBIENT_C = 18.0
IDLE_RPM = 780.0
#: The car as its first drive starts (the ignition on at once): the engine just started
#: and idling, still cold, the battery at rest. The engine ECU's values by PID.
ENGINE_VALUES: dict[int, float] = {0x04: 18.0, 0x05: AMBIENT_C, 0x0C: IDLE_RPM, 0x0D: 0.0,
                                   0x0F: AMBIENT_C, 0x11: 14.0, 0x2F: 62.0, 0x42: 12.6}  # fmt: skip
#: The transmission ECU answers the speed too, as gearboxes do, and its oil temperature.
TRANSMISSION_VALUES: dict[int, float] = {0x0D: 0.0, 0x5C: AMBIENT_C}

#: km/h per 1000 rpm in each gear of a five-speed box.
GEARS = (7.5, 13.5, 20.0, 27.0, 34.0)
UPSHIFT_RPM, DOWNSHIFT_RPM = 2400.0, 1200.0
#: m/s²: how hard the car speeds up, brakes at most, and plans to brake before a corner.
ACCEL, BRAKE, PLAN_DECEL = 1.8, 3.0, 2.0
#: km/h: the cruising speeds drawn for each leg (a town's 50 limit, give or take).
CRUISE_KMH = (40.0, 55.0)
THERMOSTAT_C = 90.0
#: Seconds: the time constants of the coolant and the transmission oil, warming and cooling.
COOLANT_WARM_S, COOLANT_COOL_S = 150.0, 1800.0
OIL_WARM_S, OIL_COOL_S = 300.0, 2400.0
#: Fuel use in % of the tank: per second idling, per metre driven (about 7 l/100 km of 50 l).
FUEL_IDLE_PCT_S, FUEL_PCT_M = 0.00044, 0.00014
#: Below this the next drive starts with the tank refilled to REFUEL_PCT.
FUEL_LOW_PCT, REFUEL_PCT = 12.0, 90.0
#: Volts: the alternator's range, and a rested battery right after the engine stops, which
#: sags toward BATTERY_FLOOR_V.
ALTERNATOR_V = (13.8, 14.4)
BATTERY_STOPPED_V, BATTERY_FLOOR_V, BATTERY_SAG_S = 12.65, 12.4, 600.0
#: Metres: the seed's altitude, and how far the route climbs and falls around it.
ALTITUDE_M, HILL_M = 34.0, 6.0


class SimulatedEcu(Protocol):
    """What the drive needs of `EcuSimulator`: its values, and whether it answers."""

    values: dict[int, float]
    silent: bool


class Phase(enum.Enum):
    """Where the drive is; each phase's ignition and engine."""

    IDLING = "idling"  # ignition on, engine idling, standing at the start
    DRIVING = "driving"  # along the route
    ARRIVED = "arrived"  # standing at the route's end, engine idling
    ENGINE_OFF = "engine_off"  # the engine stopped, the ignition still on
    PARKED = "parked"  # ignition off: every ECU silent, no positions

    @property
    def ignition(self) -> bool:
        return self is not Phase.PARKED

    @property
    def engine(self) -> bool:
        return self in (Phase.IDLING, Phase.DRIVING, Phase.ARRIVED)


@dataclass(frozen=True)
class Timing:
    """How many ticks the timed phases last; driving lasts until the route's end."""

    idle_ticks: int = 3
    arrived_ticks: int = 3
    #: Long enough for the battery's 10 s poll to read the resting voltage at least once.
    engine_off_ticks: int = 20
    parked_ticks: int = 120


def power_on(now: float) -> dict[str, Any]:
    """The ignition went on: the seed's `event.system.power` record."""
    return {
        "trigger": "stn",
        "awaken": "sleeping",
        "@ts": timestamp(now),
        "@tag": "system/power/on",
        "@t": "event.system.power",
    }


def power_sleep(now: float) -> dict[str, Any]:
    """The ignition went off and the dongle sleeps: this project's own tag and reason."""
    return {
        "reason": "engine_off",
        "@ts": timestamp(now),
        "@tag": "system/power/sleep",
        "@t": "event.system.power",
    }


class SimulatedDrive:
    """Drives the ECUs' values; records that come from outside the CAN bus (GPS, power
    events) go to `sink`. Each value is written into every ECU that holds its PID.

    A tick is `step_s` simulated seconds, run every `tick_s` real ones: the agent's 1.0 and
    1.0 drive in real time; tests step fast (`tick_s=0`) or call `step` themselves.
    `clock` stamps the records.
    """

    def __init__(
        self,
        ecus: Sequence[SimulatedEcu],
        sink: Callable[[Iterable[dict[str, Any]]], object],
        *,
        rng: random.Random | None = None,
        tick_s: float = 1.0,
        step_s: float = 1.0,
        route: Sequence[Point] = AALBORG_LOOP,
        timing: Timing = Timing(),
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.ecus = ecus
        self._sink = sink
        self._rng = rng or random.Random()  # noqa: S311 - a simulation, not a secret
        self.tick_s = tick_s
        self.step_s = step_s
        self.route = Route(route)
        self.timing = timing
        self._clock = clock
        self.phase = Phase.PARKED
        self._ticks_left = 0  # the first tick turns the ignition on
        self.leg = 0
        self.along_m = 0.0
        self.speed_kmh = 0.0
        self._cruise_kmh = 0.0
        self._arrived = False
        self.gear = 1
        self.run_time_s = 0.0
        self.coolant_c = self._initial(0x05, AMBIENT_C)
        self.oil_c = self._initial(0x5C, AMBIENT_C)
        self.fuel_pct = self._initial(0x2F, 62.0)
        self.battery_v = self._initial(0x42, BATTERY_STOPPED_V)
        self._nsat = 9
        #: What the last tick wrote, by PID (the ECUs hold only their own PIDs).
        self.values: dict[int, float] = {}

    def _initial(self, pid: int, default: float) -> float:
        return next((ecu.values[pid] for ecu in self.ecus if pid in ecu.values), default)

    def _set(self, pid: int, value: float) -> None:
        self.values[pid] = value
        for ecu in self.ecus:
            if pid in ecu.values:
                ecu.values[pid] = value

    @property
    def position(self) -> Point:
        return self.route.legs[self.leg].at(self.along_m)

    async def run(self) -> None:
        """Drive until cancelled; the first tick (the ignition going on) at once."""
        while True:
            self.step()
            await asyncio.sleep(self.tick_s)

    def step(self) -> list[dict[str, Any]]:
        """One tick: the phase moves on when its time is up, the car and its values move,
        and the tick's records (a power event, a position) go to the sink."""
        now = self._clock()
        records: list[dict[str, Any]] = []
        while self._ticks_left == 0 or (self.phase is Phase.DRIVING and self._arrived):
            self._next_phase(records, now)
        accel = self._move() if self.phase is Phase.DRIVING else self._stand()
        self._engine(accel)
        if self.phase.ignition:
            records.append(self._fix(now))
        if self._ticks_left > 0:
            self._ticks_left -= 1
        if records:
            self._sink(records)
        return records

    def _next_phase(self, records: list[dict[str, Any]], now: float) -> None:
        if self.phase is Phase.PARKED:
            self.phase, self._ticks_left = Phase.IDLING, self.timing.idle_ticks
            for ecu in self.ecus:
                ecu.silent = False
            records.append(power_on(now))
            self.run_time_s = 0.0
            self.leg, self.along_m = 0, 0.0  # at the route's start, where the last one ended
            if self.fuel_pct < FUEL_LOW_PCT:
                self.fuel_pct = REFUEL_PCT
        elif self.phase is Phase.IDLING:
            self.phase, self._ticks_left = Phase.DRIVING, -1  # until the route's end
            self._arrived, self.gear = False, 1
            self._cruise_kmh = self._rng.uniform(*CRUISE_KMH)
        elif self.phase is Phase.DRIVING:
            self.phase, self._ticks_left = Phase.ARRIVED, self.timing.arrived_ticks
        elif self.phase is Phase.ARRIVED:
            self.phase, self._ticks_left = Phase.ENGINE_OFF, self.timing.engine_off_ticks
            self.battery_v = BATTERY_STOPPED_V
        else:
            self.phase, self._ticks_left = Phase.PARKED, self.timing.parked_ticks
            for ecu in self.ecus:
                ecu.silent = True
            records.append(power_sleep(now))
            # The next drive starts where this one ended: the route again, or back.
            if not self.route.closed:
                self.route = self.route.reversed()

    def _corner_kmh(self) -> float:
        """How fast the car may take the end of its leg: slower the sharper the turn,
        standing still at the route's end."""
        turn = self.route.turn_deg(self.leg)
        if self.leg + 1 >= len(self.route.legs):
            return 0.0
        return max(12.0, 50.0 - 0.4 * turn)

    def _move(self) -> float:
        """Speed toward the leg's cruise (less a little, more a little), braking in time
        for the corner ahead; then along the route at that speed. The acceleration, m/s²."""
        dt = self.step_s
        v = self.speed_kmh / 3.6
        remaining = self.route.legs[self.leg].length_m - self.along_m
        corner = self._corner_kmh() / 3.6
        allowed = math.sqrt(corner**2 + 2 * PLAN_DECEL * remaining)
        target = min((self._cruise_kmh + self._rng.uniform(-1.5, 1.5)) / 3.6, allowed)
        if target > v:
            new = min(target, v + ACCEL * dt * self._rng.uniform(0.6, 1.0))
        else:
            new = max(target, v - BRAKE * dt)
        travel = new * dt
        while travel > 0:
            leg = self.route.legs[self.leg]
            left = leg.length_m - self.along_m
            if travel < left:
                self.along_m += travel
                break
            if self.leg + 1 == len(self.route.legs):  # the end: stop on it
                self.along_m = leg.length_m
                new = (new * dt - travel + left) / dt if dt else 0.0
                self._arrived = True
                break
            travel -= left
            self.leg, self.along_m = self.leg + 1, 0.0
            self._cruise_kmh = self._rng.uniform(*CRUISE_KMH)
        accel = (new - v) / dt if dt else 0.0
        self.speed_kmh = new * 3.6
        return accel

    def _stand(self) -> float:
        self.speed_kmh = 0.0
        return 0.0

    def _engine(self, accel: float) -> None:
        """The ECUs' values for this tick's phase, speed and acceleration."""
        dt, rng, engine = self.step_s, self._rng, self.phase.engine
        speed = self.speed_kmh
        if engine:
            self.run_time_s += dt
            rpm = self._rpm(speed, accel)
            if accel < -0.5:  # braking: the throttle closed, the injectors cut off
                load, throttle = 8.0, 14.0
            elif speed == 0:
                load, throttle = 18.0, 14.0
            else:
                load = 15.0 + 0.25 * speed + 25.0 * max(accel, 0.0)
                throttle = 14.0 + 0.12 * speed + 15.0 * max(accel, 0.0)
            charging = ALTERNATOR_V[1] if self.run_time_s < 60 else 14.1  # recharging the start
            self.battery_v = min(max(charging + rng.uniform(-0.15, 0.15), ALTERNATOR_V[0]),
                                 ALTERNATOR_V[1])  # fmt: skip
            self.coolant_c = _toward(self.coolant_c, THERMOSTAT_C, dt, COOLANT_WARM_S)
            self.oil_c = _toward(self.oil_c, THERMOSTAT_C + 5, dt, OIL_WARM_S)
            self.fuel_pct -= FUEL_IDLE_PCT_S * dt + FUEL_PCT_M * speed / 3.6 * dt
        else:
            rpm, load, throttle = 0.0, 0.0, 14.0
            self.run_time_s = 0.0
            self.battery_v = _toward(self.battery_v, BATTERY_FLOOR_V, dt, BATTERY_SAG_S)
            self.coolant_c = _toward(self.coolant_c, AMBIENT_C, dt, COOLANT_COOL_S)
            self.oil_c = _toward(self.oil_c, AMBIENT_C, dt, OIL_COOL_S)
        warm = (self.coolant_c - AMBIENT_C) * 0.05 if engine else 0.0
        self._set(0x0D, round(speed, 1))
        self._set(0x0C, round(rpm, 1))
        self._set(0x04, round(min(100.0, load + (rng.uniform(-1, 1) if engine else 0)), 1))
        self._set(0x11, round(min(100.0, throttle), 1))
        self._set(0x05, round(self.coolant_c, 1))
        self._set(0x5C, round(self.oil_c, 1))
        self._set(0x0F, round(AMBIENT_C + warm, 1))
        self._set(0x46, AMBIENT_C)
        self._set(0x2F, round(max(0.0, self.fuel_pct), 2))
        self._set(0x42, round(self.battery_v, 2))
        self._set(0x1F, round(self.run_time_s))

    def _rpm(self, speed: float, accel: float) -> float:
        """The engine speed for the road speed in the gear it is in, shifting up and down;
        never below idle (the clutch slips at walking pace)."""
        if speed == 0:
            self.gear = 1
            return IDLE_RPM + self._rng.uniform(-15, 15)
        rpm = speed / GEARS[self.gear - 1] * 1000
        if rpm > UPSHIFT_RPM and self.gear < len(GEARS):
            self.gear += 1
        elif rpm < DOWNSHIFT_RPM and self.gear > 1:
            self.gear -= 1
        rpm = speed / GEARS[self.gear - 1] * 1000 + 300 * max(accel, 0.0)
        return max(IDLE_RPM, rpm) + self._rng.uniform(-20, 20)

    def _fix(self, now: float) -> dict[str, Any]:
        """The seed's `track.pos` for where the car is: its leg's heading, its speed."""
        lat, lon = self.position
        done = sum(leg.length_m for leg in self.route.legs[: self.leg]) + self.along_m
        altitude = ALTITUDE_M + HILL_M * math.sin(2 * math.pi * done / self.route.length_m)
        self._nsat = min(12, max(7, self._nsat + self._rng.choice((-1, 0, 0, 0, 1))))
        return {
            "utc": datetime.fromtimestamp(now, UTC).strftime("%H:%M:%S"),
            "cog": round(self.route.legs[self.leg].bearing, 2),
            "nsat": self._nsat,
            "alt": round(altitude),
            "@ts": timestamp(now),
            "@t": "track.pos",
            "sog": round(self.speed_kmh, 1),
            "loc": {"lat": round(lat, 6), "lon": round(lon, 6)},
        }


def _toward(value: float, target: float, dt: float, tau_s: float) -> float:
    """`value` after `dt` seconds of approaching `target` with time constant `tau_s`."""
    return target + (value - target) * math.exp(-dt / tau_s)
