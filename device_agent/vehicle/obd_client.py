"""The OBD-II tester: asks an ECU over ISO-TP and decodes its answers (docs/vehicle.md).

Every request is one ISO-TP payload (mode, PID) and waits for the answer of that mode
(mode + 0x40); an ECU that says no (`0x7F mode code`) or stays silent past the timeout is a
`NoAnswer`, never a crash, so the poller can slow down and try again.
"""

from __future__ import annotations

import asyncio

import can

from device_agent.vehicle import dtc, pids
from device_agent.vehicle.isotp_link import IsoTpChannel, ecu_ids

__all__ = ["NoAnswer", "ObdClient"]

NEGATIVE = 0x7F
#: `7F <mode> 78`: "request received, response pending". ISO 15765-4 lets the ECU then
#: take up to P2*max = 5 s; each such answer restarts that wait, within PENDING_LIMIT_S.
RESPONSE_PENDING = 0x78
PENDING_WAIT_S = 5.0
PENDING_LIMIT_S = 15.0


class NoAnswer(Exception):
    """The ECU did not answer in time, or refused the request."""


class ObdClient:
    """Requests to ECU `ecu` (0, the engine: 0x7E0 → 0x7E8; n: 0x7E0+n → 0x7E8+n)."""

    def __init__(
        self, bus: can.BusABC, notifier: can.Notifier, *, ecu: int = 0, timeout: float = 0.5
    ) -> None:
        request_id, self.answer_id = ecu_ids(ecu)
        self._channel = IsoTpChannel(bus, notifier, txid=request_id, rxid=self.answer_id)
        self.timeout = timeout
        #: One request at a time: the poller and a command (`obd.query`) asking the same
        #: ECU at once would each take the other's answer off the one channel.
        self._turn = asyncio.Lock()

    @property
    def frame_errors(self) -> int:
        """Frames on this ECU's answer id that broke ISO-TP and were dropped."""
        return self._channel.errors

    def forget(self) -> None:
        """Drop answers nobody waits for (before a new request, functional or not)."""
        self._channel.clear()

    async def request(self, mode: int, pid: int | None = None) -> bytes:
        """The ECU's positive answer to (mode, pid); NoAnswer otherwise."""
        async with self._turn:
            self.forget()
            self._channel.send(bytes([mode] if pid is None else [mode, pid]))
            return await self.answer(mode)

    async def answer(self, mode: int, timeout: float | None = None) -> bytes:  # noqa: ASYNC109
        """The next answer to a request of `mode` already sent (physically or
        functionally); NoAnswer for silence, a refusal or an answer to something else."""
        wait = self.timeout if timeout is None else timeout
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        limit = loop.time() + PENDING_LIMIT_S
        while True:
            answer = await self._channel.recv(max(0.0, deadline - loop.time()))
            if answer is None:
                raise NoAnswer(f"no answer to mode 0x{mode:02X} in time")
            if answer[:3] == bytes([NEGATIVE, mode, RESPONSE_PENDING]) and loop.time() < limit:
                deadline = min(limit, loop.time() + PENDING_WAIT_S)
                continue
            if answer[0] == NEGATIVE and answer[1:2] == bytes([mode]):
                code = answer[2] if len(answer) > 2 else 0
                raise NoAnswer(f"the ECU refused mode 0x{mode:02X} (code 0x{code:02X})")
            if answer[0] != mode + 0x40:
                raise NoAnswer(f"an answer to another request: {answer[:4].hex()}")
            return answer

    async def read(self, key: str | int) -> tuple[pids.Pid, float]:
        """One current value by PID name or number."""
        entry = pids.lookup(key)
        answer = await self.request(pids.MODE_CURRENT, entry.pid)
        if answer[1:2] != bytes([entry.pid]):
            # a late answer to an earlier request that timed out: not this PID's value
            raise NoAnswer(f"an answer to another request: {answer[:4].hex()}")
        return pids.decode(answer)

    async def supported(self, first: bytes | None = None) -> set[int]:
        """Every supported mode 01 PID, asking 0x00, 0x20, … while the last map says more.
        `first` is an answer to 0x00 already in hand (from functional discovery). A map
        that does not come after the first one ends the search with what is known."""
        found = pids.supported_pids([first or await self.request(pids.MODE_CURRENT, 0x00)])
        for base in pids.SUPPORT_PIDS[1:]:
            if base not in found:
                break
            try:
                found |= pids.supported_pids([await self.request(pids.MODE_CURRENT, base)])
            except (NoAnswer, pids.DecodeError):
                break
        return found

    async def vin(self) -> str:
        """The VIN (mode 09 PID 02): a multi-frame answer, reassembled by ISO-TP."""
        return dtc.decode_vin(await self.request(dtc.MODE_VEHICLE_INFO, dtc.PID_VIN))

    async def dtcs(self) -> list[str]:
        """The stored trouble codes (mode 03)."""
        return dtc.decode_dtcs(await self.request(dtc.MODE_DTCS))

    def close(self) -> None:
        self._channel.close()
