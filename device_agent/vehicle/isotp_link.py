"""One ISO 15765-2 (ISO-TP) channel on a python-can bus, for asyncio code.

can-isotp does the segmentation (first, consecutive and flow-control frames) in a thread of
its own fed by python-can's `Notifier`; this wraps it so that the event loop never blocks
on it (`recv` runs in a worker thread). An OBD-II tester sends on 0x7E0 and hears 0x7E8; an
ECU the other way round (docs/vehicle.md, "ISO-TP").
"""

from __future__ import annotations

import asyncio

import can
import isotp

__all__ = ["IsoTpChannel"]

#: Frames are padded to 8 bytes with 0xCC, as ECUs on ISO 15765-4 expect.
PARAMS = {"tx_padding": 0xCC, "tx_data_min_length": 8, "blocking_send": False}


class IsoTpChannel:
    """Send and receive whole ISO-TP payloads on (txid, rxid) of `bus`."""

    def __init__(self, bus: can.BusABC, notifier: can.Notifier, *, txid: int, rxid: int) -> None:
        address = isotp.Address(isotp.AddressingMode.Normal_11bits, txid=txid, rxid=rxid)
        self._stack = isotp.NotifierBasedCanStack(bus, notifier, address=address, params=PARAMS)
        self._stack.start()

    def send(self, payload: bytes) -> None:
        """Queue one payload; can-isotp's thread sends its frames."""
        self._stack.send(payload)

    async def recv(self, timeout: float) -> bytes | None:  # noqa: ASYNC109 - a bound on one wait
        """The next whole payload, or None when none came within ``timeout`` seconds."""
        data = await asyncio.to_thread(self._stack.recv, True, timeout)
        return None if data is None else bytes(data)

    def clear(self) -> None:
        """Drop what arrived unasked (a late answer to an earlier request)."""
        self._stack.clear_rx_queue()

    def close(self) -> None:
        self._stack.stop()
