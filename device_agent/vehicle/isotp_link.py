"""ISO 15765-2 (ISO-TP) channels on a python-can bus, for asyncio code.

can-isotp does the segmentation (first, consecutive and flow-control frames) in threads of
its own fed by python-can's `Notifier`; this wraps it so that the event loop never blocks
on it (`recv` waits in a thread of the channel's own, not in asyncio's default pool, where
waits of up to a timeout each would hold back the agent's other work).

ISO 15765-4 addresses (docs/vehicle.md, "ISO-TP"):
- physically, ECU n hears 0x7E0+n and answers on 0x7E8+n; the tester's flow control for a
  multi-frame answer goes to the ECU's physical address;
- functionally, every ECU hears 0x7DF; a functional request is one single frame, and each
  ECU answers on its own physical address.

Frames that break the protocol (a consecutive frame with no first frame, a bad sequence
number, an unknown frame type) are dropped by can-isotp; each channel counts them
(`errors`), so a noisy bus shows in the vehicle's status instead of as exceptions.
"""

from __future__ import annotations

import asyncio
import queue
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import can
import isotp

__all__ = ["FUNCTIONAL_ID", "FunctionalListener", "FunctionalSender", "IsoTpChannel", "ecu_ids"]

#: The functional (broadcast) request id of ISO 15765-4 with 11-bit identifiers.
FUNCTIONAL_ID = 0x7DF
REQUEST_BASE = 0x7E0
ANSWER_BASE = 0x7E8
#: ECUs 0 to 7: requests on 0x7E0 to 0x7E7, answers on 0x7E8 to 0x7EF.
ECU_COUNT = 8
#: Frames are padded to 8 bytes with 0xCC, as ECUs on ISO 15765-4 expect.
PARAMS = {"tx_padding": 0xCC, "tx_data_min_length": 8, "blocking_send": False}
_NORMAL = isotp.AddressingMode.Normal_11bits
#: Whole payloads kept for a reader, the oldest dropped first: answers nobody asked for
#: (another tester's, on an ECU this agent does not poll) must not pile up.
RX_QUEUE_MAX = 16


class _Latest(queue.Queue[Any]):
    """A queue that keeps the newest RX_QUEUE_MAX items and never blocks a put (the
    `_init` hook queue.Queue documents for subclasses)."""

    def _init(self, maxsize: int) -> None:
        self.queue: deque[Any] = deque(maxlen=RX_QUEUE_MAX)


def ecu_ids(ecu: int) -> tuple[int, int]:
    """ECU n's (request id, answer id): 0 is the engine's (0x7E0, 0x7E8)."""
    if not 0 <= ecu < ECU_COUNT:
        raise ValueError(f"ISO 15765-4 has ECUs 0 to {ECU_COUNT - 1}, not {ecu}")
    return REQUEST_BASE + ecu, ANSWER_BASE + ecu


class _Stack:
    """One can-isotp stack on the notifier, counting the protocol errors it drops."""

    def __init__(self, bus: can.BusABC, notifier: can.Notifier, address: object) -> None:
        #: Frames can-isotp dropped as breaking the protocol; written by its thread only.
        self.errors = 0
        #: Where `recv` waits: one thread, as one channel has one reader at a time.
        self._waiter = ThreadPoolExecutor(1, thread_name_prefix="isotp-recv")
        self._stack = isotp.NotifierBasedCanStack(
            bus, notifier, address=address, params=PARAMS, error_handler=self._count
        )
        # can-isotp's own queue of whole payloads is unbounded; it is replaced before the
        # stack starts filling it (it is only put to, got from and emptied)
        self._stack.rx_queue = _Latest()
        self._stack.start()

    def _count(self, _error: isotp.IsoTpError) -> None:
        self.errors += 1

    async def recv(self, timeout: float) -> bytes | None:  # noqa: ASYNC109 - a bound on one wait
        """The next whole payload, or None when none came within ``timeout`` seconds."""
        loop = asyncio.get_running_loop()
        data = await loop.run_in_executor(self._waiter, self._stack.recv, True, timeout)
        return None if data is None else bytes(data)

    def clear(self) -> None:
        """Drop what arrived unasked (a late answer to an earlier request)."""
        self._stack.clear_rx_queue()

    def close(self) -> None:
        self._stack.stop()
        self._waiter.shutdown(wait=False, cancel_futures=True)


class IsoTpChannel(_Stack):
    """Send and receive whole ISO-TP payloads on (txid, rxid) of `bus`."""

    def __init__(self, bus: can.BusABC, notifier: can.Notifier, *, txid: int, rxid: int) -> None:
        super().__init__(bus, notifier, isotp.Address(_NORMAL, txid=txid, rxid=rxid))

    def send(self, payload: bytes) -> None:
        """Queue one payload; can-isotp's thread sends its frames."""
        self._stack.send(payload)


class FunctionalSender(_Stack):
    """The tester's functional requests on 0x7DF. can-isotp refuses a functional payload
    that does not fit one frame, as ISO 15765-4 requires. The answers come on each ECU's
    physical channel, not here; what this hears (other testers' requests) is discarded."""

    def __init__(self, bus: can.BusABC, notifier: can.Notifier) -> None:
        address = isotp.AsymmetricAddress(
            tx_addr=isotp.Address(_NORMAL, txid=FUNCTIONAL_ID, tx_only=True),
            rx_addr=isotp.Address(_NORMAL, rxid=FUNCTIONAL_ID, rx_only=True),
        )
        super().__init__(bus, notifier, address)

    def send(self, payload: bytes) -> None:
        self._stack.clear_rx_queue()
        self._stack.send(payload, target_address_type=isotp.TargetAddressType.Functional)


class FunctionalListener(_Stack):
    """An ECU's ear for functional requests on 0x7DF; it answers on its physical channel."""

    def __init__(self, bus: can.BusABC, notifier: can.Notifier, *, answer_id: int) -> None:
        address = isotp.AsymmetricAddress(
            tx_addr=isotp.Address(_NORMAL, txid=answer_id, tx_only=True),
            rx_addr=isotp.Address(_NORMAL, rxid=FUNCTIONAL_ID, rx_only=True),
        )
        super().__init__(bus, notifier, address)
