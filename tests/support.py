"""Helpers shared by the suites: free ports, a manual clock, an asyncio loop on a side thread,
waiting for the server's rollup task."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from concurrent.futures import Future
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import grpc
import sqlalchemy as sa

T = TypeVar("T")


def free_ports(count: int) -> list[int]:
    """`count` distinct TCP ports that are free on 127.0.0.1 right now.

    The sockets stay bound until all are chosen, so the OS cannot hand out one port twice.
    """
    with contextlib.ExitStack() as stack:
        ports = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind(("127.0.0.1", 0))
            ports.append(int(sock.getsockname()[1]))
        return ports


def consecutive_free_ports(count: int) -> int:
    """A port p such that p .. p+count-1 are all free on 127.0.0.1 now (the gRPC ports of
    `thingwire serve --replicas N` are THINGWIRE_GRPC_PORT + I)."""
    for _ in range(50):
        first = free_port()
        try:
            for offset in range(1, count):
                with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
                    probe.bind(("127.0.0.1", first + offset))
        except OSError:
            continue
        return first
    raise RuntimeError(f"no run of {count} free ports found")


def free_port() -> int:
    """One TCP port that is free on 127.0.0.1 right now."""
    return free_ports(1)[0]


class ManualClock:
    """A clock the test moves by hand, for expiries and throttling windows."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or datetime.now(UTC).replace(microsecond=0)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


class LoopThread:
    """An asyncio loop on a daemon thread, so sync tests can drive grpc.aio servers.

    `run` takes a coroutine, or a function returning an awaitable (which then starts on the
    loop's thread), and waits for its result.
    """

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def run(self, work: Awaitable[T] | Callable[[], Awaitable[T]], timeout: float = 30.0) -> T:
        future: Future[T] = asyncio.run_coroutine_threadsafe(_call(work), self.loop)
        return future.result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)
        self.loop.close()


async def _call(work: Awaitable[T] | Callable[[], Awaitable[T]]) -> T:
    if inspect.isawaitable(work):
        return await work
    return await work()


__all__ = ["LoopThread", "ManualClock", "consecutive_free_ports", "free_port", "free_ports"]


@contextlib.contextmanager
def serving(
    interceptors: Sequence[grpc.aio.ServerInterceptor], handlers: Sequence[Any]
) -> Iterator[grpc.Channel]:
    """A real grpc.aio server on a free port, with `interceptors` and generic `handlers`.

    Yields a synchronous channel to it; the server and its loop stop when the block ends.
    """
    loop = LoopThread()

    async def start() -> tuple[grpc.aio.Server, int]:
        server = grpc.aio.server(interceptors=list(interceptors))
        server.add_generic_rpc_handlers(list(handlers))
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        return server, port

    server, port = loop.run(start)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            yield channel
    finally:
        loop.run(lambda: server.stop(0))
        loop.close()


def wait_until_folded(db_url: str, marks: Any, timeout_s: float = 30.0) -> None:
    """Until the table of dirty marks ``marks`` (a model) is empty: the running server's
    rollup task (every second, a mark quiet for 2 s) has folded everything."""
    from server.storage.db import Database

    database = Database(db_url)
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            with database.session() as s:
                dirty = s.scalar(sa.select(sa.func.count()).select_from(marks))
            if not dirty:
                return
            assert time.monotonic() < deadline, f"{dirty} marks still dirty"
            time.sleep(0.2)
    finally:
        database.dispose()
