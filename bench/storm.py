"""A reconnect storm: restart the server under a fleet of links and time its return.

Shared by `bench/reconnect_storm.py` and `tests/integration/test_reconnect_storm.py`. The
server is stopped as an operator stops it (SIGTERM: every link gets a GoAway with its own
delay within the GoAway window) or killed (SIGKILL: no GoAway, the links just fail), then
started again on the same ports and database. The load generators' agents reconnect by
themselves, with the agent's backoff. Every device welcomed after the stop is called
through REST until it answers; meanwhile `GET /auth/user/` is polled every 0.1 s.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from bench.fleet import STOP_TIMEOUT_S, CallError, Fleet, Poller, Rest, latency_summary
from tests.integration.stack import Stack

#: Calls in flight at once to the devices that came back (`--callers`).
CALLERS = 32
#: A poll sent this long before the stop has been answered by then.
IN_FLIGHT_S = 0.5
#: A device that did not answer is called again this much later.
RETRY_S = 0.5


@dataclass
class Storm:
    """One restart: when each device came back (welcomed) and first answered a call."""

    links: int
    started: float = field(default_factory=time.monotonic)
    welcomed: dict[int, float] = field(default_factory=dict)
    answered: dict[int, float] = field(default_factory=dict)
    call_failures: int = 0
    queue: asyncio.Queue[int] = field(default_factory=asyncio.Queue)

    def welcome(self, n: int, when: float) -> None:
        self.welcomed.setdefault(n, when)
        if n not in self.answered:
            self.queue.put_nowait(n)

    async def call(self, rest: Rest) -> None:
        """Call devices as they come back, each until it answers once."""
        while True:
            n = await self.queue.get()
            if n in self.answered:
                continue
            try:
                await rest.ping(n)
                self.answered[n] = time.monotonic()
            except (CallError, OSError, TimeoutError):
                self.call_failures += 1
                asyncio.get_running_loop().call_later(RETRY_S, self.queue.put_nowait, n)

    @property
    def done(self) -> bool:
        return len(self.answered) >= self.links


async def restart(
    stack: Stack,
    fleet: Fleet,
    rest: Rest,
    poller_rest: Rest,
    sig: int,
    timeout_s: float,
    callers: int = CALLERS,
) -> dict[str, object]:
    """Stop the server with `sig`, start it again, and wait until every link is back and
    has answered a call (or `timeout_s`); the figures of the round."""
    storm = Storm(fleet.links)
    fleet.on_welcome = storm.welcome
    poller = Poller(poller_rest)
    poller.start()
    calling = [asyncio.create_task(storm.call(rest)) for _ in range(callers)]
    try:
        await asyncio.sleep(2.0)  # the server answering before the stop
        storm.started = time.monotonic()
        await asyncio.to_thread(stack.stop, sig, STOP_TIMEOUT_S)
        stopped = time.monotonic()
        # The server's own account of its stop (docs/benchmarks.md, "Reconnect storm"),
        # read before the next start overwrites its log.
        stop_log = [line for line in stack.logs().splitlines() if "stopped" in line]
        await asyncio.to_thread(stack.start)
        up = time.monotonic()
        deadline = storm.started + timeout_s
        while not storm.done and time.monotonic() < deadline:  # noqa: ASYNC110 - a deadline too
            await asyncio.sleep(0.05)
        finished = time.monotonic()
        await asyncio.sleep(1.0)  # and a second after
    finally:
        for task in calling:
            task.cancel()
        await asyncio.gather(*calling, return_exceptions=True)
        await poller.stop()
        fleet.on_welcome = lambda n, when: None
    t0 = storm.started
    during = [lat for sent, lat in poller.answers if up <= sent <= finished]
    return {
        "signal": signal.Signals(sig).name,
        "links": storm.links,
        "stop_s": round(stopped - t0, 2),
        "stop_log": stop_log[-3:],
        "server_up_s": round(up - t0, 2),
        "all_back_s": round(max(storm.welcomed.values()) - t0, 2) if storm.welcomed else None,
        "back": len(storm.welcomed),
        "all_answering_s": round(max(storm.answered.values()) - t0, 2) if storm.done else None,
        "answering": len(storm.answered),
        "call_failures": storm.call_failures,
        "rest_polls_while_storm": len(during),
        "rest_failures_while_storm": sum(
            1 for sent, _ in poller.failures if up <= sent <= finished
        ),
        "rest_failures_while_down": sum(1 for sent, _ in poller.failures if sent < up),
        # A poll in flight when the server is stopped may fail with it: not counted.
        "rest_failures_before_stop": sum(1 for t, _ in poller.failures if t < t0 - IN_FLIGHT_S),
        "rest_failure_examples": sorted({why for sent, why in poller.failures if sent >= up})[:3],
        **{f"rest_{k}": v for k, v in latency_summary(during).items()},
        "welcomed_per_s": per_second(storm.welcomed.values(), t0),
    }


def per_second(times: Iterable[float], t0: float) -> list[int]:
    """How many of `times` fell in each second after `t0`: the links-opened curve."""
    counts: list[int] = []
    for when in times:
        second = max(0, int(when - t0))
        counts.extend([0] * (second + 1 - len(counts)))
        counts[second] += 1
    return counts
