"""An engine ECU on a CAN bus: answers OBD-II requests as a car does (docs/vehicle.md).

ECU n listens on 0x7E0+n and on the functional 0x7DF and answers on 0x7E8+n, through
ISO-TP: mode 01 for the PIDs it has a value for (and the supported-PID maps that list
them), mode 03 with its stored codes, mode 09 PID 02 with its VIN (a multi-frame answer).
What it does not know it refuses as an ECU does (`0x7F mode 0x12`, "sub-function not
supported"); `silent` makes it answer nothing, as an ECU with the ignition off. Used by the
tests and by `thingwire agent --simulate`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

import can

from device_agent.vehicle import dtc, pids
from device_agent.vehicle.isotp_link import FunctionalListener, IsoTpChannel, ecu_ids

__all__ = ["EcuSimulator", "broadcast", "encode_dtc"]

NOT_SUPPORTED = 0x12

#: Each simulated PID's data bytes from the value it should decode to (J1979 inverted).
ENCODERS: dict[int, Callable[[float], bytes]] = {
    0x04: lambda v: bytes([round(v * 255 / 100)]),
    0x05: lambda v: bytes([round(v + 40)]),
    0x0B: lambda v: bytes([round(v)]),
    0x0C: lambda v: round(v * 4).to_bytes(2, "big"),
    0x0D: lambda v: bytes([round(v)]),
    0x0F: lambda v: bytes([round(v + 40)]),
    0x10: lambda v: round(v * 100).to_bytes(2, "big"),
    0x11: lambda v: bytes([round(v * 255 / 100)]),
    0x1F: lambda v: round(v).to_bytes(2, "big"),
    0x2F: lambda v: bytes([round(v * 255 / 100)]),
    0x42: lambda v: round(v * 1000).to_bytes(2, "big"),
    0x46: lambda v: bytes([round(v + 40)]),
    0x5C: lambda v: bytes([round(v + 40)]),
}


def encode_dtc(code: str) -> bytes:
    """`P0133` as its two bytes (the inverse of `dtc.dtc_text`)."""
    system = "PCBU".index(code[0])
    digits = int(code[1:], 16)
    return ((system << 14) | digits).to_bytes(2, "big")


class EcuSimulator:
    """One ECU's answers, from values the caller (or a simulated drive) sets."""

    def __init__(
        self,
        bus: can.BusABC,
        notifier: can.Notifier,
        *,
        values: dict[int, float] | None = None,
        vin: str | None = "WP0ZZZ99ZTS392124",
        dtcs: tuple[str, ...] = (),
        ecu: int = 0,
    ) -> None:
        self.values: dict[int, float] = dict(values or {})
        #: None: this ECU has no VIN to give (a gearbox, as a rule) and refuses mode 09.
        self.vin = vin
        self.dtcs = dtcs
        self.silent = False
        request_id, answer_id = ecu_ids(ecu)
        self._channel = IsoTpChannel(bus, notifier, txid=answer_id, rxid=request_id)
        self._functional = FunctionalListener(bus, notifier, answer_id=answer_id)
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._serve(self._channel)),
            asyncio.create_task(self._serve(self._functional)),
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._channel.close()
        self._functional.close()

    async def _serve(self, ear: IsoTpChannel | FunctionalListener) -> None:
        """Answer what `ear` hears, physical or functional, on the physical channel."""
        while True:
            request = await ear.recv(0.2)
            if request is None or self.silent:
                continue
            answer = self.answer(request)
            if answer is not None:
                self._channel.send(answer)

    def answer(self, request: bytes) -> bytes | None:
        """The answer to one request payload (None: nothing to say to it)."""
        if not request:
            return None
        mode = request[0]
        if mode == pids.MODE_CURRENT and len(request) >= 2:
            data = self._current(request[1])
            if data is not None:
                return bytes([0x41, request[1]]) + data
        elif mode == dtc.MODE_DTCS:
            return bytes([0x43, len(self.dtcs)]) + b"".join(encode_dtc(c) for c in self.dtcs)
        elif mode == dtc.MODE_VEHICLE_INFO and request[1:2] == bytes([dtc.PID_VIN]) and self.vin:
            return bytes([0x49, dtc.PID_VIN, 0x01]) + self.vin.encode("ascii")
        return bytes([0x7F, mode, NOT_SUPPORTED])

    def _current(self, pid: int) -> bytes | None:
        if pid in pids.SUPPORT_PIDS:
            known = set(self.values)
            bits = 0
            for offset in range(1, 33):
                wanted = pid + offset
                more = offset == 32 and any(other > wanted for other in known)
                if wanted in known or more:
                    bits |= 1 << (32 - offset)
            if pid != 0 and not any(other > pid for other in known):
                return None  # the map before this one did not list it
            return bits.to_bytes(4, "big")
        if pid in self.values and pid in ENCODERS:
            return ENCODERS[pid](self.values[pid])
        return None


async def broadcast(bus: can.BusABC, database: Any, values: dict[int, float]) -> None:
    """Send the simulated car's frames of the DBC (device_agent/vehicle/dbc/simulated.dbc)
    ten times a second, from the same values the ECU answers with, as ECUs broadcast."""
    engine = database.get_message_by_name("ENGINE_STATUS")
    speed = database.get_message_by_name("VEHICLE_SPEED")
    odometer = 12_345.0
    while True:
        await asyncio.sleep(0.1)
        odometer += values.get(0x0D, 0.0) / 36_000  # km in a tenth of a second
        frames = [
            (engine, {"EngineSpeed": values.get(0x0C, 0.0), "CoolantTemp": values.get(0x05, 20.0),
                      "ThrottlePos": values.get(0x11, 0.0)}),
            (speed, {"Speed": values.get(0x0D, 0.0), "Odometer": round(odometer, 1)}),
        ]  # fmt: skip
        for message, signals in frames:
            data = message.encode(signals)
            bus.send(can.Message(arbitration_id=message.frame_id, data=data, is_extended_id=False))
