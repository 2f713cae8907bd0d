"""A fleet of device links for the benchmarks and the storm test: its devices, its load
generators (`bench/link_load.py`, one process each), and REST clients that call it.

Used by `bench/link_memory.py` (memory and call latency of N live links),
`bench/reconnect_storm.py` (a server restart under N links) and
`tests/integration/test_reconnect_storm.py` (the same, reduced).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import sqlalchemy as sa

from bench.link_load import CREDENTIALS, DEVICE, RESOURCE, SECRET, raise_open_files_limit
from bench.resource_load import HttpPool, http_request
from server.clock import utc_now
from server.security.hashing import configure_argon2, hash_password, hash_secret
from server.storage import users
from server.storage.db import Database
from server.storage.models import Device
from tests.integration.stack import Stack

USER = "bench"
#: A second user, with no devices, whose REST calls show how the server answers others
#: meanwhile (`GET /auth/user/` lists the caller's devices: the fleet's owner would make
#: the poll measure a 10,000-row read instead).
WATCHER = "watcher"
PASSWORD = "bench-password-1"  # noqa: S105 - a throwaway account in a temp database
QUICK_LINKS = 2000
LINKS_PER_PROCESS = 2500
#: Streams per shared connection: well under Envoy's 1,024 per HTTP/2 connection.
LINKS_PER_CHANNEL = 640
#: How long a server holding (or just left by) 10,000 links may take to stop.
STOP_TIMEOUT_S = 120.0
#: REST connections of the callers (HTTP/1.1: one request at a time on each).
REST_CONNECTIONS = 32


def add_fleet_arguments(parser: argparse.ArgumentParser) -> None:
    """The options every fleet benchmark takes."""
    parser.add_argument("--links", type=int, default=10_000)
    parser.add_argument("--processes", type=int, default=0, help="load generators (0: 1 per 2,500)")
    parser.add_argument("--open-rate", type=float, default=2000, help="links opened a second")
    parser.add_argument("--quick", action="store_true", help="2,000 links")
    parser.add_argument(
        "--server-checkout",
        type=Path,
        help="run the server from this checkout (a worktree of another commit): before/after",
    )


def fleet_size(args: argparse.Namespace) -> tuple[int, int]:
    """The links and the load-generator processes the options ask for."""
    links = QUICK_LINKS if args.quick else int(args.links)
    return links, int(args.processes) or max(1, round(links / LINKS_PER_PROCESS))


def rss_kib(pid: int) -> int:
    """The process's resident set size in KiB (VmRSS of /proc/<pid>/status)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


def child_pids(pid: int) -> list[int]:
    """The process's children (from /proc)."""
    return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def envoy_pid(server_pid: int) -> int:
    """The Envoy that `thingwire serve` runs as its child."""
    for child in child_pids(server_pid):
        if "envoy" in Path(f"/proc/{child}/cmdline").read_text():
            return child
    raise RuntimeError("no Envoy under the server")


def start_stack(
    workdir: Path, devices: int, server_checkout: Path | None = None, **extra_env: str
) -> Stack:
    """A started stack (SQLite in `workdir`) with the user and `devices` devices whose link
    secrets the load generators know. With `server_checkout` (another checkout of the
    project, such as a worktree of an older commit) the server runs that code, for
    before/after figures from one run."""
    raise_open_files_limit()  # the server and Envoy inherit it
    if server_checkout is not None:
        extra_env = {"PYTHONPATH": str(server_checkout.absolute()), **extra_env}
    stack = Stack(
        workdir=workdir,
        db_url=f"sqlite:///{workdir}/bench.db",
        extra_env={"THINGWIRE_MAX_DEVICES_PER_USER": "0", **extra_env},
    )
    stack.start()
    try:
        for n, username in enumerate((USER, WATCHER)):
            stack.cli(
                "user", "create", "--email", f"b{n}@example.com", "--password", PASSWORD,
                "--username", username,
            )  # fmt: skip
        create_devices(stack.db_url, devices)
    except BaseException:
        stack.stop()
        raise
    return stack


def create_devices(db_url: str, count: int) -> None:
    """`count` devices with known link secrets, inserted in one statement while the server
    runs (the devices API would cost an argon2 hash and several queries each)."""
    configure_argon2(time_cost=1, memory_cost=8, parallelism=1)  # cheap: setup only
    credentials = hash_password(CREDENTIALS)
    now = utc_now()
    database = Database(db_url)
    try:
        with database.session() as s:
            user = users.get_user_by_login(s, USER)
            assert user is not None
            rows = [
                {
                    "user_id": user.id,
                    "device_id": DEVICE.format(n=n),
                    "unit_id": str(uuid.UUID(int=n + 1)),
                    "description": "",
                    "credentials_hash": credentials,
                    "push_token_hash": hash_secret(f"bench-push-{n}"),
                    "link_secret_hash": hash_secret(SECRET.format(n=n)),
                    "create_time": now,
                }
                for n in range(count)
            ]
            s.execute(sa.insert(Device), rows)
    finally:
        database.dispose()


def bearer_token(stack: Stack, username: str = USER) -> str:
    """A Thinger access token (a JWT) of a bench user, from the password grant."""
    with stack.http() as http:
        answer = http.post(
            "/oauth/token",
            data={"grant_type": "password", "username": username, "password": PASSWORD},
        )
        answer.raise_for_status()
        return str(answer.json()["access_token"])


def percentile(ordered: list[float], q: float) -> float:
    """Nearest-rank percentile of an ascending list (0 for an empty list)."""
    if not ordered:
        return 0.0
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def latency_summary(seconds: list[float]) -> dict[str, float]:
    """p50, p90, p99 and max of latencies in seconds, in ms."""
    ordered = sorted(seconds)
    return {
        f"{label}_ms": round(percentile(ordered, q) * 1000, 2)
        for label, q in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("max", 1.0))
    }


# -- the load generators ------------------------------------------------------------------


@dataclass
class Generator:
    """One `bench/link_load.py` process and what its reports said."""

    process: subprocess.Popen[str]
    links: int
    up: int = 0
    welcomes: int = 0


@dataclass
class Fleet:
    """`links` device links held by `processes` load generators through the gateway.

    Every report's welcomed devices go to `on_welcome(n, when)` (monotonic time)."""

    target: str
    links: int
    processes: int
    on_welcome: Callable[[int, float], None] = lambda n, when: None
    generators: list[Generator] = field(default_factory=list)
    _readers: list[asyncio.Task[None]] = field(default_factory=list)

    async def start(self, open_rate: float = 0) -> None:
        per = math.ceil(self.links / self.processes)
        for first in range(0, self.links, per):
            count = min(per, self.links - first)
            channels = max(1, math.ceil(count / LINKS_PER_CHANNEL))
            command = [
                sys.executable, "-m", "bench.link_load", "--target", self.target,
                "--user", USER, "--first", str(first), "--links", str(count),
                "--channels", str(channels), "--open-rate", str(open_rate / self.processes),
            ]  # fmt: skip
            process = subprocess.Popen(  # noqa: S603, ASYNC220 - our own module; returns at once
                command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
            )
            generator = Generator(process, count)
            self.generators.append(generator)
            self._readers.append(asyncio.create_task(self._read(generator)))

    async def _read(self, generator: Generator) -> None:
        stdout = generator.process.stdout
        assert stdout is not None
        while line := await asyncio.to_thread(stdout.readline):
            parts = line.split()
            if len(parts) < 3 or parts[0] != "up":
                continue
            generator.up, generator.welcomes = int(parts[1]), int(parts[2])
            if len(parts) > 3:
                now = time.monotonic()
                for n in parts[3].split(","):
                    self.on_welcome(int(n), now)

    @property
    def up(self) -> int:
        """Links welcomed and open now, as the generators last reported."""
        return sum(g.up for g in self.generators)

    @property
    def pids(self) -> list[int]:
        return [g.process.pid for g in self.generators]

    async def wait_up(self, timeout_s: float) -> float:
        """Until every link is up; the seconds it took (TimeoutError past `timeout_s`)."""
        started = time.monotonic()
        async with asyncio.timeout(timeout_s):
            while self.up < self.links:
                for g in self.generators:
                    if g.process.poll() is not None:
                        raise RuntimeError(f"a load generator exited {g.process.returncode}")
                await asyncio.sleep(0.1)
        return time.monotonic() - started

    async def stop(self) -> None:
        for g in self.generators:
            if g.process.stdin is not None and not g.process.stdin.closed:
                g.process.stdin.close()
        for g in self.generators:
            try:
                await asyncio.to_thread(g.process.wait, 30)
            except subprocess.TimeoutExpired:
                g.process.kill()
                await asyncio.to_thread(g.process.wait)
        await asyncio.gather(*self._readers, return_exceptions=True)
        for g in self.generators:
            if g.process.stdout is not None:
                g.process.stdout.close()


# -- REST callers -------------------------------------------------------------------------


class Rest:
    """Prepared REST requests through the gateway, on keep-alive connections."""

    def __init__(self, base_url: str, token: str, connections: int = REST_CONNECTIONS) -> None:
        url = urlsplit(base_url)
        assert url.hostname is not None
        assert url.port is not None
        self.host = f"{url.hostname}:{url.port}"
        self.bearer = f"Bearer {token}"
        self.pool = HttpPool(url.hostname, url.port, connections)
        self._user = http_request("GET", self.host, "/auth/user/", self.bearer)

    async def ping(self, n: int) -> float:
        """Call device `n`'s resource; its latency in seconds, or CallError."""
        path = f"/v2/users/{USER}/devices/{DEVICE.format(n=n)}/{RESOURCE}"
        started = time.monotonic()
        status, body = await self._request(http_request("GET", self.host, path, self.bearer))
        took = time.monotonic() - started
        if status != 200 or json.loads(body).get("out") != n:
            raise CallError(status, body)
        return took

    async def current_user(self) -> float:
        """`GET /auth/user/`; its latency in seconds, or CallError."""
        started = time.monotonic()
        status, body = await self._request(self._user)
        took = time.monotonic() - started
        if status != 200:
            raise CallError(status, body)
        return took

    async def _request(self, raw: bytes) -> tuple[int, bytes]:
        # Connections the server closed (a restart) stay in the pool's idle list, where a
        # request would wait for an answer that never comes: drop them first.
        self.pool.idle = [c for c in self.pool.idle if c.reusable]
        return await self.pool.request(raw)

    def close(self) -> None:
        self.pool.close()


class CallError(Exception):
    def __init__(self, status: int, body: bytes) -> None:
        super().__init__(f"{status}: {body[:200]!r}")
        self.status = status


@dataclass
class Sweep:
    """Calls to devices at an open-loop rate: latencies and failures."""

    latencies: list[float] = field(default_factory=list)
    failures: dict[str, int] = field(default_factory=dict)

    def failed(self, error: BaseException) -> None:
        kind = str(error.status) if isinstance(error, CallError) else type(error).__name__
        self.failures[kind] = self.failures.get(kind, 0) + 1


async def sweep(rest: Rest, devices: list[int], rate: float) -> Sweep:
    """Call each of `devices` once, call i due at t0 + i/rate (open loop: a slow answer
    never delays the next call, and latency counts from when the call was due)."""
    result = Sweep()
    started = time.monotonic()

    async def one(i: int, n: int) -> None:
        due = started + i / rate
        try:
            await rest.ping(n)
            result.latencies.append(time.monotonic() - due)
        except (CallError, OSError, TimeoutError) as error:
            result.failed(error)

    tasks = []
    for i, n in enumerate(devices):
        delay = started + i / rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(i, n)))
    await asyncio.gather(*tasks)
    return result


class Poller:
    """`GET /auth/user/` every `period_s`, whatever the server is doing: each answer's time
    and latency, and each failure's time."""

    def __init__(self, rest: Rest, period_s: float = 0.1) -> None:
        self.rest = rest
        self.period_s = period_s
        self.answers: list[tuple[float, float]] = []
        self.failures: list[tuple[float, str]] = []
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        tick = time.monotonic()
        polls: set[asyncio.Task[None]] = set()
        while True:
            poll = asyncio.create_task(self._one(tick))
            polls.add(poll)
            poll.add_done_callback(polls.discard)
            tick += self.period_s
            await asyncio.sleep(max(0.0, tick - time.monotonic()))

    async def _one(self, sent: float) -> None:
        try:
            latency = await self.rest.current_user()
            self.answers.append((sent, latency))
        except (CallError, OSError, TimeoutError) as error:
            self.failures.append((sent, str(error) or type(error).__name__))

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
