"""The OBD-II tester: asks an ECU over ISO-TP and decodes its answers (docs/vehicle.md).

Every request is one ISO-TP payload (mode, PID) and waits for the answer of that mode
(mode + 0x40); an ECU that says no (`0x7F mode code`) or stays silent past the timeout is a
`NoAnswer`, never a crash, so the poller can slow down and try again.
"""

from __future__ import annotations

import can

from device_agent.vehicle import dtc, pids
from device_agent.vehicle.isotp_link import IsoTpChannel

__all__ = ["NoAnswer", "ObdClient"]

TESTER_TX = 0x7E0
ECU_RX = 0x7E8
NEGATIVE = 0x7F


class NoAnswer(Exception):
    """The ECU did not answer in time, or refused the request."""


class ObdClient:
    """Requests to one ECU (0x7E0 → 0x7E8 by default)."""

    def __init__(
        self,
        bus: can.BusABC,
        notifier: can.Notifier,
        *,
        txid: int = TESTER_TX,
        rxid: int = ECU_RX,
        timeout: float = 0.5,
    ) -> None:
        self._channel = IsoTpChannel(bus, notifier, txid=txid, rxid=rxid)
        self.timeout = timeout

    async def request(self, mode: int, pid: int | None = None) -> bytes:
        """The ECU's positive answer to (mode, pid); NoAnswer otherwise."""
        self._channel.clear()
        self._channel.send(bytes([mode] if pid is None else [mode, pid]))
        answer = await self._channel.recv(self.timeout)
        if answer is None:
            raise NoAnswer(f"no answer to mode 0x{mode:02X} within {self.timeout:g} s")
        if answer[0] == NEGATIVE:
            code = answer[2] if len(answer) > 2 else 0
            raise NoAnswer(f"the ECU refused mode 0x{mode:02X} (code 0x{code:02X})")
        if answer[0] != mode + 0x40:
            raise NoAnswer(f"an answer to another request: {answer[:4].hex()}")
        return answer

    async def read(self, key: str | int) -> tuple[pids.Pid, float]:
        """One current value by PID name or number."""
        entry = pids.lookup(key)
        return pids.decode(await self.request(pids.MODE_CURRENT, entry.pid))

    async def supported(self) -> set[int]:
        """Every supported mode 01 PID, asking 0x00, 0x20, … while the last map says more."""
        found: set[int] = set()
        for base in pids.SUPPORT_PIDS:
            found |= pids.supported_pids([await self.request(pids.MODE_CURRENT, base)])
            if base + 0x20 not in found:
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
