"""The vehicle's ECUs: found by one functional request, then asked one by one
(docs/vehicle.md, "Finding the ECUs").

A car has one to eight emission-related ECUs on ISO 15765-4 (the engine at 0x7E8, often a
gearbox at 0x7E9, a hybrid controller, …). The tester finds them the way scan tools do: a
functional `01 00` on 0x7DF, which every ECU hears, answered by each on its own id with its
first supported-PID map. After that every request is physical, to the ECU that supports
the PID, so that a reading has one source and the bus carries one answer per request.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import can

from device_agent.vehicle import dtc, pids
from device_agent.vehicle.isotp_link import ECU_COUNT, FunctionalSender
from device_agent.vehicle.obd_client import NoAnswer, ObdClient

__all__ = ["EcuSet", "discover"]

log = logging.getLogger(__name__)

#: How long the ECUs have to answer the functional request (J1979 allows 50 ms; the rest
#: is margin for a loaded bus and can-isotp's threads).
DISCOVERY_WINDOW_S = 0.3


async def discover(
    bus: can.BusABC,
    notifier: can.Notifier,
    *,
    timeout: float = 0.5,  # noqa: ASYNC109 - each request's bound, kept by the clients
    window: float = DISCOVERY_WINDOW_S,
) -> EcuSet:
    """The ECUs that answer a functional `01 00` within `window`, each with the PIDs it
    supports; an empty set when none does (the ignition is off, or no car is there)."""
    clients = [ObdClient(bus, notifier, ecu=n, timeout=timeout) for n in range(ECU_COUNT)]
    found = EcuSet()
    completed = False
    try:
        sender = FunctionalSender(bus, notifier)
        try:
            for client in clients:
                client.forget()
            sender.send(bytes([pids.MODE_CURRENT, 0x00]))
            answers = await asyncio.gather(
                *(client.answer(pids.MODE_CURRENT, window) for client in clients),
                return_exceptions=True,
            )
        finally:
            sender.close()
        for client, answer in zip(clients, answers, strict=True):
            if isinstance(answer, bytes):
                with contextlib.suppress(NoAnswer, pids.DecodeError):
                    found.add(client, await client.supported(answer))
        completed = True
    finally:
        # the ids that stayed silent, and every one when this was cancelled or failed
        for client in clients:
            if not completed or client not in found.clients:
                found.dropped_errors += client.frame_errors
                client.close()
    return found


class EcuSet:
    """The ECUs found, and which of them answers each PID (the lowest id that supports
    it: the engine's first). It reads like one ECU, so the poller needs no other code."""

    def __init__(self) -> None:
        self.clients: list[ObdClient] = []
        self.supported: dict[int, set[int]] = {}
        #: Frame errors of the channels discovery closed (ids that did not answer).
        self.dropped_errors = 0

    def __bool__(self) -> bool:
        return bool(self.clients)

    def add(self, client: ObdClient, supported: set[int]) -> None:
        self.clients.append(client)
        self.supported[client.answer_id] = supported

    def supports(self, key: str | int) -> bool:
        pid = pids.lookup(key).pid
        return any(pid in found for found in self.supported.values())

    def _for(self, pid: int) -> ObdClient:
        for client in self.clients:
            if pid in self.supported[client.answer_id]:
                return client
        return self.clients[0]  # nobody says so: the engine's answer (or refusal) decides

    async def read(self, key: str | int) -> tuple[pids.Pid, float]:
        """One current value, from the ECU that supports the PID."""
        if not self.clients:
            raise NoAnswer("no ECU has answered")
        return await self._for(pids.lookup(key).pid).read(key)

    async def vin(self) -> str:
        """The first VIN an ECU gives (the engine's, as a rule)."""
        for client in self.clients:
            with contextlib.suppress(NoAnswer, dtc.DecodeError):
                return await client.vin()
        raise NoAnswer("no ECU gave a VIN")

    async def dtcs(self) -> list[str]:
        """Every ECU's stored trouble codes, each code once, in the order they came;
        NoAnswer only when no ECU answered."""
        codes: dict[str, None] = {}
        answered = False
        for client in self.clients:
            try:
                found = await client.dtcs()
            except (NoAnswer, dtc.DecodeError):
                continue
            answered = True
            codes.update(dict.fromkeys(found))
        if not answered:
            raise NoAnswer("no ECU answered mode 03")
        return list(codes)

    @property
    def frame_errors(self) -> int:
        return self.dropped_errors + sum(client.frame_errors for client in self.clients)

    def describe(self) -> list[str]:
        """`["0x7E8", "0x7E9"]`: the answer ids of the ECUs found."""
        return [f"0x{client.answer_id:03X}" for client in self.clients]

    def close(self) -> None:
        for client in self.clients:
            client.close()
