"""The vehicle in the running agent: the bus, the poller feeding the outbox, and what the
`obd` resource and the `obd.query` / `obd.dtc` commands read (docs/vehicle.md, "In the
agent").

The bus comes from configuration (`VehicleSettings`): any interface python-can supports,
`socketcan` on a device, `virtual` for tests. With `--simulate` an ECU simulator answers on
a virtual channel of its own. A bus that cannot be opened, or that fails later, is logged
and tried again with a growing delay (5 s up to 60 s), while the rest of the agent works on;
on the way out the bus is shut down cleanly.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import can

from device_agent.commands import CommandError, CommandTimeout, CommandUnavailable
from device_agent.vehicle import pids
from device_agent.vehicle.broadcast import (
    SIMULATED_DBC,
    SignalRecorder,
    SignalRule,
    load_dbc,
    parse_rules,
)
from device_agent.vehicle.drive import ENGINE_VALUES, SimulatedDrive
from device_agent.vehicle.obd_client import NoAnswer, ObdClient
from device_agent.vehicle.poller import Poller, PollPlan
from device_agent.vehicle.simulator import EcuSimulator, broadcast

__all__ = ["Vehicle", "VehicleSettings"]

log = logging.getLogger(__name__)

RETRY_FIRST_S = 5.0
RETRY_MAX_S = 60.0
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
        bitrate_text = env.get("THINGWIRE_AGENT_CAN_BITRATE") or ""
        if bitrate_text and not bitrate_text.isdigit():
            raise ValueError(f"THINGWIRE_AGENT_CAN_BITRATE={bitrate_text!r} is not a whole number")
        plan_text = env.get("THINGWIRE_AGENT_OBD_PIDS") or ""
        try:
            plan = PollPlan.parse(plan_text) if plan_text else PollPlan()
        except (KeyError, ValueError) as error:
            raise ValueError(f"THINGWIRE_AGENT_OBD_PIDS: {error}") from None
        dbc = env.get("THINGWIRE_AGENT_CAN_DBC") or None
        try:
            signals = parse_rules(env.get("THINGWIRE_AGENT_CAN_SIGNALS") or "")
        except ValueError as error:
            raise ValueError(f"THINGWIRE_AGENT_CAN_SIGNALS: {error}") from None
        if signals and dbc is None:
            raise ValueError("THINGWIRE_AGENT_CAN_SIGNALS needs THINGWIRE_AGENT_CAN_DBC")
        return cls(
            interface=env.get("THINGWIRE_AGENT_CAN_INTERFACE") or None,
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
    """The bus, the tester on it and its poller; the latest reading of each PID."""

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
        self._client: ObdClient | None = None
        #: The last value of each PID, by name: what the `obd` resource answers.
        self.latest: dict[str, float] = {}
        self.failures = 0
        #: The broadcast-signal recorder while a DBC is in use (its counts are the stats).
        self.signals: SignalRecorder | None = None

    async def run(self) -> None:
        """Poll until cancelled, reopening the bus after failures."""
        delay = RETRY_FIRST_S
        while True:
            try:
                await self._session()
            except (can.CanError, OSError, ValueError) as error:
                self.failures += 1
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
        with contextlib.ExitStack() as closing:
            bus = can.Bus(
                interface=self.settings.interface, channel=self.settings.channel, **options
            )
            closing.callback(bus.shutdown)
            notifier = can.Notifier(bus, [], loop=loop)
            closing.callback(notifier.stop)
            ecu = None
            if self._simulate:
                ecu_bus = can.Bus(interface="virtual", channel=self.settings.channel)
                closing.callback(ecu_bus.shutdown)
                ecu_notifier = can.Notifier(ecu_bus, [], loop=loop)
                closing.callback(ecu_notifier.stop)
                ecu = EcuSimulator(ecu_bus, ecu_notifier, values=ENGINE_VALUES)
                ecu.start()
                sending = asyncio.create_task(
                    broadcast(ecu_bus, load_dbc(SIMULATED_DBC), ecu.values)
                )
                closing.callback(sending.cancel)
            if self.settings.dbc is not None and self.settings.signals:
                self._listen(notifier, loop)
            client = ObdClient(bus, notifier)
            closing.callback(client.close)
            self._client = client
            log.info("reading the vehicle on %s/%s", self.settings.interface, self.settings.channel)
            try:
                poller = Poller(client, self._record, self.settings.plan)
                if ecu is None:
                    await poller.run()
                else:
                    await asyncio.gather(poller.run(), SimulatedDrive([ecu], self._sink).run())
            finally:
                self._client = None
                if ecu is not None:
                    await ecu.stop()

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

    def _connected(self) -> ObdClient:
        if self._client is None:
            raise CommandUnavailable("the vehicle's CAN bus is not open")
        return self._client

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
        return {"name": entry.name, "value": value, "unit": entry.unit}

    async def dtc(self) -> list[str]:
        """`obd.dtc`: the stored trouble codes, `["P0133", …]`."""
        try:
            return await self._connected().dtcs()
        except NoAnswer as missing:
            raise CommandTimeout(f"the ECU did not answer: {missing}") from None

    def current(self) -> dict[str, float]:
        """What the `obd` resource answers: the latest value of each PID polled."""
        return dict(self.latest)
