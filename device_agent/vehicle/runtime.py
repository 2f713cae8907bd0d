"""The vehicle in the running agent: the bus, the poller feeding the outbox, and what the
`obd` resource and the `obd.query` / `obd.dtc` commands read (docs/vehicle.md, "In the
agent").

The bus comes from configuration (`VehicleSettings`): any interface python-can supports,
`socketcan` on a device, `virtual` for tests. The ECUs are found by a functional request
(`ecus.discover`), asked again with a growing delay while none answers (the ignition is
off), and each polled PID is read from the ECU that supports it; PIDs that no ECU supports
are left out of the plan. With `--simulate` a simulated car (an engine ECU and a gearbox
ECU, driven by `drive.SimulatedDrive`) answers on a virtual channel of its own.

A bus that cannot be opened, or that fails later, is logged and tried again with a growing
delay (5 s up to 60 s), while the rest of the agent works on; on the way out the bus is
shut down cleanly.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import time
from collections.abc import Callable, Coroutine, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import can

from device_agent.commands import (
    CommandBadAnswer,
    CommandError,
    CommandTimeout,
    CommandUnavailable,
)
from device_agent.vehicle import pids
from device_agent.vehicle.broadcast import (
    SIMULATED_DBC,
    SignalRecorder,
    SignalRule,
    check_signals,
    load_dbc,
    parse_rules,
)
from device_agent.vehicle.drive import ENGINE_VALUES, TRANSMISSION_VALUES, SimulatedDrive
from device_agent.vehicle.ecus import EcuSet, discover
from device_agent.vehicle.obd_client import NoAnswer
from device_agent.vehicle.poller import Poller, PollPlan
from device_agent.vehicle.simulator import EcuSimulator, broadcast

__all__ = ["Vehicle", "VehicleSettings"]

log = logging.getLogger(__name__)
#: can-isotp logs a warning for every frame that breaks the protocol; a noisy bus would
#: flood the agent's log with them. They are counted instead (`obd.status`, frame_errors).
logging.getLogger("isotp").setLevel(logging.ERROR)

RETRY_FIRST_S = 5.0
RETRY_MAX_S = 60.0
#: While no ECU answers the functional request: ask again after 1 s, doubling up to 30 s.
DISCOVER_FIRST_S = 1.0
DISCOVER_MAX_S = 30.0
SIMULATED_CHANNEL = "thingwire-simulated-vehicle"
#: The simulated car's broadcast signals: a record when they move enough, at most every 5 s.
SIMULATED_SIGNALS = {
    "EngineSpeed": SignalRule(min_change=100, min_interval_s=5),
    "Speed": SignalRule(min_change=2, min_interval_s=5),
    "Odometer": SignalRule(min_change=0.1, min_interval_s=30),
}


@dataclass(frozen=True)
class VehicleSettings:
    """THINGWIRE_AGENT_CAN_INTERFACE (unset: no vehicle), THINGWIRE_AGENT_CAN_CHANNEL,
    THINGWIRE_AGENT_CAN_BITRATE, THINGWIRE_AGENT_OBD_PIDS (`rpm=1,speed=1,...`)."""

    interface: str | None = None
    channel: str = "can0"
    bitrate: int | None = None
    plan: PollPlan = field(default_factory=PollPlan)
    #: THINGWIRE_AGENT_CAN_DBC and THINGWIRE_AGENT_CAN_SIGNALS: broadcast signals to record.
    dbc: Path | None = None
    signals: Mapping[str, SignalRule] = field(default_factory=dict)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> VehicleSettings:
        """ValueError naming the variable for a value the agent cannot use."""
        env = os.environ if env is None else env
        interface = env.get("THINGWIRE_AGENT_CAN_INTERFACE") or None
        if interface is not None and interface not in can.interfaces.VALID_INTERFACES:
            raise ValueError(
                f"THINGWIRE_AGENT_CAN_INTERFACE={interface[:40]!r} is not an interface of "
                f"python-can; it has {', '.join(sorted(can.interfaces.VALID_INTERFACES))}"
            )
        bitrate_text = env.get("THINGWIRE_AGENT_CAN_BITRATE") or ""
        if bitrate_text and not (
            bitrate_text.isascii() and bitrate_text.isdigit() and len(bitrate_text) <= 8
        ):
            raise ValueError(
                f"THINGWIRE_AGENT_CAN_BITRATE={bitrate_text[:40]!r} is not a bitrate in bit/s"
            )
        plan_text = env.get("THINGWIRE_AGENT_OBD_PIDS") or ""
        try:
            plan = PollPlan.parse(plan_text) if plan_text else PollPlan()
        except (KeyError, ValueError) as error:
            reason = error.args[0] if error.args else error  # a KeyError's str() adds quotes
            raise ValueError(f"THINGWIRE_AGENT_OBD_PIDS: {reason}") from None
        dbc = env.get("THINGWIRE_AGENT_CAN_DBC") or None
        try:
            signals = parse_rules(env.get("THINGWIRE_AGENT_CAN_SIGNALS") or "")
        except ValueError as error:
            raise ValueError(f"THINGWIRE_AGENT_CAN_SIGNALS: {error}") from None
        if signals and dbc is None:
            raise ValueError("THINGWIRE_AGENT_CAN_SIGNALS needs THINGWIRE_AGENT_CAN_DBC")
        if dbc is not None:
            try:
                database = load_dbc(Path(dbc))
            except ValueError as error:
                raise ValueError(f"THINGWIRE_AGENT_CAN_DBC: {error}") from None
            try:
                check_signals(database, signals, Path(dbc))
            except ValueError as error:
                raise ValueError(f"THINGWIRE_AGENT_CAN_SIGNALS: {error}") from None
        return cls(
            interface=interface,
            channel=env.get("THINGWIRE_AGENT_CAN_CHANNEL") or "can0",
            bitrate=int(bitrate_text) if bitrate_text else None,
            plan=plan,
            dbc=Path(dbc) if dbc else None,
            signals=signals,
        )

    def simulated(self) -> VehicleSettings:
        """The same plan on the simulator's virtual channel, with the simulated car's DBC."""
        return VehicleSettings(
            "virtual", SIMULATED_CHANNEL, None, self.plan, SIMULATED_DBC, SIMULATED_SIGNALS
        )


class Vehicle:
    """The bus, the ECUs found on it and the poller; the latest reading of each PID."""

    def __init__(
        self,
        settings: VehicleSettings,
        sink: Callable[[Iterable[dict[str, Any]]], object],
        *,
        simulate: bool = False,
    ) -> None:
        if settings.interface is None and not simulate:
            raise ValueError("no CAN interface configured (THINGWIRE_AGENT_CAN_INTERFACE)")
        self.settings = settings.simulated() if simulate else settings
        self._simulate = simulate
        self._sink = sink
        self._ecus: EcuSet | None = None
        self._poller: Poller | None = None
        #: The last value of each PID, by name: what the `obd` resource answers.
        self.latest: dict[str, float] = {}
        self.failures = 0
        self.vin: str | None = None
        #: PIDs of the plan that no ECU of this vehicle supports (not polled).
        self.unsupported: list[str] = []
        #: The broadcast-signal recorder while a DBC is in use (its counts are the stats).
        self.signals: SignalRecorder | None = None
        #: Frames that broke ISO-TP on channels no longer open (earlier sessions, the ids
        #: that did not answer a discovery).
        self._past_frame_errors = 0

    async def run(self) -> None:
        """Poll until cancelled, reopening the bus after failures. A session that ran
        longer than the longest delay starts the delays over."""
        delay = RETRY_FIRST_S
        while True:
            started = time.monotonic()
            try:
                await self._session()
            except (can.CanError, OSError, ValueError) as error:
                self.failures += 1
                if time.monotonic() - started > RETRY_MAX_S:
                    delay = RETRY_FIRST_S
                log.error(
                    "the CAN bus %s/%s failed: %s; trying again in %.0f s",
                    self.settings.interface,
                    self.settings.channel,
                    error,
                    delay,
                )
            await asyncio.sleep(delay * random.uniform(0.8, 1.2))  # noqa: S311 - jitter
            delay = min(delay * 2, RETRY_MAX_S)

    async def _session(self) -> None:
        loop = asyncio.get_running_loop()
        options: dict[str, Any] = {}
        if self.settings.bitrate:
            options["bitrate"] = self.settings.bitrate
        async with contextlib.AsyncExitStack() as closing:
            bus = can.Bus(
                interface=self.settings.interface, channel=self.settings.channel, **options
            )
            closing.callback(bus.shutdown)
            notifier = can.Notifier(bus, [], loop=loop)
            closing.callback(notifier.stop)
            if self.settings.dbc is not None and self.settings.signals:
                self._listen(notifier, loop)
            alongside = self._simulated_car(closing) if self._simulate else []
            log.info("reading the vehicle on %s/%s", self.settings.interface, self.settings.channel)
            closing.callback(self._closed)
            await first_failure(self._read(bus, notifier), watch_bus(notifier), *alongside)

    def _closed(self) -> None:
        if self._ecus is not None:
            self._past_frame_errors += self._ecus.frame_errors
            self._ecus.close()
        self._ecus = None
        self._poller = None

    async def _read(self, bus: can.BusABC, notifier: can.Notifier) -> None:
        """Find the ECUs (again and again while none answers), then poll them."""
        delay = DISCOVER_FIRST_S
        while not (ecus := await discover(bus, notifier)):
            self._past_frame_errors += ecus.frame_errors
            log.log(
                logging.INFO if delay == DISCOVER_FIRST_S else logging.DEBUG,
                "no ECU answered on %s/%s (is the ignition on?); asking again",
                self.settings.interface,
                self.settings.channel,
            )
            await asyncio.sleep(delay)
            delay = min(delay * 2, DISCOVER_MAX_S)
        self._ecus = ecus
        with contextlib.suppress(NoAnswer):
            self.vin = await ecus.vin()
        rates = {
            name: rate for name, rate in self.settings.plan.rates.items() if ecus.supports(name)
        }
        self.unsupported = sorted(set(self.settings.plan.rates) - set(rates))
        log.info(
            "found the ECUs %s (VIN %s); polling %s%s",
            ", ".join(ecus.describe()),
            self.vin or "unknown",
            ", ".join(rates) or "nothing",
            f"; not supported: {', '.join(self.unsupported)}" if self.unsupported else "",
        )
        if not rates:
            await asyncio.Event().wait()  # nothing to poll; obd.query and obd.dtc still work
        self._poller = Poller(ecus, self._record, PollPlan(rates, self.settings.plan.max_backoff))
        await self._poller.run()

    def _simulated_car(self, closing: contextlib.AsyncExitStack) -> list[Coroutine[Any, Any, None]]:
        """An engine ECU and a gearbox ECU on the simulated channel, their broadcast
        frames and the drive that moves their values: coroutines to run alongside. The
        frames come from the DBC the recorder already loaded (`simulated()` sets it)."""
        assert self.signals is not None
        loop = asyncio.get_running_loop()
        ecu_bus = can.Bus(interface="virtual", channel=self.settings.channel)
        closing.callback(ecu_bus.shutdown)
        ecu_notifier = can.Notifier(ecu_bus, [], loop=loop)
        closing.callback(ecu_notifier.stop)
        engine = EcuSimulator(ecu_bus, ecu_notifier, values=ENGINE_VALUES)
        gearbox = EcuSimulator(ecu_bus, ecu_notifier, values=TRANSMISSION_VALUES, vin=None, ecu=1)
        for ecu in (engine, gearbox):
            ecu.start()
            closing.push_async_callback(ecu.stop)
        return [
            broadcast(ecu_bus, self.signals.database, engine.values),
            SimulatedDrive([engine, gearbox], self._sink).run(),
        ]

    def _listen(self, notifier: can.Notifier, loop: asyncio.AbstractEventLoop) -> None:
        """Record the DBC's selected signals. The notifier calls listeners in its own
        thread: frames of other ids are dropped there, the rest decoded on the loop (where
        the outbox lives)."""
        assert self.settings.dbc is not None
        recorder = SignalRecorder.from_file(self.settings.dbc, self._sink, self.settings.signals)
        self.signals = recorder
        wanted = {
            message.frame_id
            for message in recorder.database.messages
            if any(signal.name in self.settings.signals for signal in message.signals)
        }

        def on_frame(frame: can.Message) -> None:
            if frame.arbitration_id in wanted:
                loop.call_soon_threadsafe(recorder.on_frame, frame)

        notifier.add_listener(on_frame)

    def _record(self, records: Iterable[dict[str, Any]]) -> None:
        batch = list(records)
        for record in batch:
            entry = pids.BY_RECORD[record["@t"]]
            self.latest[entry.name] = record[entry.field]
        self._sink(batch)

    def _connected(self) -> EcuSet:
        if self._ecus is None:
            raise CommandUnavailable("the vehicle's CAN bus is not open, or no ECU has answered")
        return self._ecus

    async def query(self, pid: Any) -> dict[str, Any]:
        """`obd.query rpm` (or `12`, `0x0C`): one PID now, `{"name", "value", "unit"}`."""
        if not isinstance(pid, str | int) or isinstance(pid, bool):
            raise CommandError("obd.query takes one PID, by name or number")
        try:
            entry = pids.lookup(pid)
        except KeyError as error:
            raise CommandError(str(error.args[0])) from None
        try:
            entry, value = await self._connected().read(entry.pid)
        except NoAnswer as missing:
            raise CommandTimeout(f"the ECU did not answer: {missing}") from None
        except pids.DecodeError as error:
            raise CommandBadAnswer(f"the ECU's answer does not decode: {error}") from None
        return {"name": entry.name, "value": value, "unit": entry.unit}

    async def dtc(self) -> list[str]:
        """`obd.dtc`: the stored trouble codes, `["P0133", …]`."""
        try:
            return await self._connected().dtcs()
        except NoAnswer as missing:
            raise CommandTimeout(f"the ECU did not answer: {missing}") from None
        except pids.DecodeError as error:
            raise CommandBadAnswer(f"the ECU's answer does not decode: {error}") from None

    def current(self) -> dict[str, float]:
        """What the `obd` resource answers: the latest value of each PID polled."""
        return dict(self.latest)

    async def status(self) -> dict[str, Any]:
        """`obd.status`: the bus, the ECUs found, the VIN, and what polling has seen
        (readings, requests unanswered, answers and frames that were malformed)."""
        ecus, poller = self._ecus, self._poller
        stats = poller.stats if poller is not None else None
        return {
            "interface": self.settings.interface,
            "channel": self.settings.channel,
            "ecus": ecus.describe() if ecus is not None else [],
            "vin": self.vin,
            "polled": sorted(poller.intervals) if poller is not None else [],
            "unsupported": self.unsupported,
            "readings": stats.readings if stats else 0,
            "unanswered": stats.unanswered if stats else 0,
            "malformed": stats.malformed if stats else 0,
            "frame_errors": self._past_frame_errors + (ecus.frame_errors if ecus else 0),
            "bus_failures": self.failures,
        }


async def first_failure(*jobs: Coroutine[Any, Any, object]) -> None:
    """Run `jobs` together until one ends (with an error, as a rule); the others are
    cancelled, and its error raised. Unlike `gather`, no job outlives the session."""
    tasks = [asyncio.ensure_future(job) for job in jobs]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            task.result()
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def watch_bus(notifier: can.Notifier) -> None:
    """Wait until the bus under `notifier` fails, then raise its error as a CanError.

    python-can's Notifier hands a failing `recv` (an adapter pulled out, an interface gone
    down) to its listeners' `on_error` on the event loop, then its thread ends: without
    this the poller would time out for ever on a bus that is gone.
    """
    failed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    class Watch(can.Listener):
        def on_message_received(self, msg: can.Message) -> None:
            pass

        def on_error(self, exc: Exception) -> None:
            if not failed.done():
                failed.set_exception(can.CanOperationError(f"the bus failed: {exc}"))

    notifier.add_listener(Watch())
    await failed
