"""`thingwire serve --replicas N`: N server processes behind one Envoy, on one PostgreSQL,
routing device calls through NATS (docs/architecture.md, "Scale-out").

The supervisor (this process) migrates the database and creates the signing keys once,
starts Envoy with one upstream per replica, and runs each replica as a child process
(`thingwire serve --replica-index I`): replica I listens on `THINGWIRE_GRPC_PORT + I` and
on its own gateway socket. A replica that dies is started again (after 1 s, doubling up to
30 s while it keeps dying young): its devices reconnect to the others meanwhile and Envoy
sends calls elsewhere, so the stack keeps serving. Envoy dying stops everything (exit 1),
as with one process; SIGTERM or SIGINT stops the replicas gracefully, then Envoy (exit 0).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import time
from pathlib import Path

import grpc

from gateway.launcher import Envoy, _die_with_parent, check_port_free
from server.clock import utc_now
from server.config import ConfigError, Settings
from server.gateway_socket import grpc_address
from server.health_client import check_health
from server.security.keys import KeyFile
from server.state import open_database

log = logging.getLogger(__name__)

#: Restart delays of a replica that died: first, the most, and how long a replica must
#: have run for the next death to start from the first delay again.
RESTART_FIRST_S = 1.0
RESTART_MAX_S = 30.0
RESTART_RESET_AFTER_S = 60.0
#: How long a starting replica may take to answer health checks.
REPLICA_READY_S = 60.0
STOP_GRACE_S = 5.0


def replica_socket(settings: Settings, index: int) -> Path:
    """Where Envoy reaches replica `index` (a directory only the owner may open)."""
    return (settings.state_dir / "server" / f"gateway-{index}.sock").absolute()


def check_replica_settings(settings: Settings, replicas: int) -> None:
    """ConfigError unless N replicas can share what they need: NATS and PostgreSQL."""
    if replicas < 1:
        raise ConfigError("--replicas must be at least 1")
    if not settings.nats_url:
        raise ConfigError(
            f"--replicas {replicas} routes device calls through NATS: set THINGWIRE_NATS_URL"
            " (e.g. nats://127.0.0.1:4222)"
        )
    if not settings.db_url.startswith("postgresql"):
        raise ConfigError(
            f"--replicas {replicas} needs PostgreSQL (THINGWIRE_DB_URL=postgresql://…): with"
            " SQLite every replica would write one file under one lock, so ingest would stall"
            " on the others' commits and the embedded default is one process"
        )
    if settings.grpc_port + replicas - 1 > 65535:
        raise ConfigError(f"THINGWIRE_GRPC_PORT + {replicas - 1} is past 65535")


def _serving(target: str) -> bool:
    with contextlib.suppress(Exception), grpc.insecure_channel(target) as channel:
        return check_health(channel, "", 1.0) == "SERVING"
    return False


class ReplicaError(RuntimeError):
    """A replica could not be started (it exited or stayed silent)."""


class Replica:
    """One child process `thingwire serve --replica-index I`, started again when it dies."""

    def __init__(self, settings: Settings, index: int) -> None:
        self.index = index
        self.port = settings.grpc_port + index
        self.socket = replica_socket(settings, index)
        self.process: asyncio.subprocess.Process | None = None
        self.started_at = 0.0
        self.delay_s = RESTART_FIRST_S
        self.restarts = 0

    def command(self) -> list[str]:
        return [sys.executable, "-m", "server.cli", "serve", "--replica-index", str(self.index)]

    async def start(self) -> None:
        self.process = await asyncio.create_subprocess_exec(
            *self.command(),
            stdin=asyncio.subprocess.DEVNULL,
            preexec_fn=_die_with_parent(os.getpid()),
        )
        self.started_at = time.monotonic()

    async def wait_ready(self) -> None:
        """Until the replica answers health checks; ReplicaError if it
        exits first or stays silent."""
        deadline = time.monotonic() + REPLICA_READY_S
        target = f"127.0.0.1:{self.port}"
        while time.monotonic() < deadline:
            if self.process is not None and self.process.returncode is not None:
                raise ReplicaError(
                    f"replica {self.index} exited with status {self.process.returncode}"
                    " before it was ready"
                )
            if await asyncio.to_thread(_serving, target):
                return
            await asyncio.sleep(0.2)
        raise ReplicaError(f"replica {self.index} did not answer within {REPLICA_READY_S:g} s")

    async def wait(self) -> int:
        assert self.process is not None
        return await self.process.wait()

    def next_delay(self) -> float:
        """How long to wait before starting a replica that just died."""
        if time.monotonic() - self.started_at > RESTART_RESET_AFTER_S:
            self.delay_s = RESTART_FIRST_S
        delay, self.delay_s = self.delay_s, min(self.delay_s * 2, RESTART_MAX_S)
        return delay

    async def stop(self, grace: float) -> None:
        process = self.process
        if process is None or process.returncode is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), grace + STOP_GRACE_S)
        except TimeoutError:
            process.kill()
            await process.wait()


async def serve_replicas(settings: Settings, count: int, banner: str) -> int:
    """Run `count` replicas and Envoy until a signal (exit 0) or until Envoy dies (exit 1)."""
    check_replica_settings(settings, count)
    from server.serve import gateway_spec  # serve imports this module

    replicas = [Replica(settings, index) for index in range(count)]
    envoy = Envoy(
        gateway_spec(settings, [r.socket for r in replicas]),
        state_dir=settings.state_dir / "gateway",
    )
    for replica in replicas:
        check_port_free(replica.port, "127.0.0.1", f"gRPC port of replica {replica.index}")
        grpc_address(replica.socket)  # the directory exists, a dead server's socket is gone
    envoy.check_ports()
    # Once, here: N replicas migrating one database, or each creating the key file, race.
    database = await asyncio.to_thread(open_database, settings)
    database.dispose()
    KeyFile(settings.jwt_key_file).load(utc_now())

    stop_requested = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop_requested.set)
    try:
        for replica in replicas:
            await replica.start()
        await asyncio.gather(*(replica.wait_ready() for replica in replicas))
        await envoy.start()
        await envoy.wait_ready(timeout=30)
    except Exception:
        await asyncio.gather(*(r.stop(0) for r in replicas))
        await envoy.stop(STOP_GRACE_S)
        raise
    print(banner, flush=True)
    print(
        f"  {count} replicas on gRPC ports {replicas[0].port}-{replicas[-1].port},"
        f" routing through NATS at {settings.nats_url}",
        flush=True,
    )

    reason = await _supervise(replicas, envoy, stop_requested)
    await asyncio.gather(*(r.stop(STOP_GRACE_S) for r in replicas))
    await envoy.stop(STOP_GRACE_S)
    if reason == "signal":
        log.info("stopped on signal")
        return 0
    print(
        f"thingwire: error: envoy exited unexpectedly (exit code {envoy.returncode});"
        " stopped the replicas",
        file=sys.stderr,
        flush=True,
    )
    return 1


async def _supervise(replicas: list[Replica], envoy: Envoy, stop_requested: asyncio.Event) -> str:
    """Restart replicas that die, until a signal ("signal") or Envoy's end ("envoy")."""
    stopping = asyncio.create_task(stop_requested.wait())
    gateway = asyncio.create_task(envoy.wait())
    exits = {asyncio.create_task(r.wait()): r for r in replicas}
    try:
        while True:
            done, _ = await asyncio.wait(
                {stopping, gateway, *exits}, return_when=asyncio.FIRST_COMPLETED
            )
            if stopping in done:
                return "signal"
            if gateway in done:
                return "envoy"
            for task in done:
                replica = exits.pop(task)
                delay = replica.next_delay()
                replica.restarts += 1
                print(
                    f"thingwire: replica {replica.index} exited with status {task.result()};"
                    f" starting it again in {delay:g} s (its devices reconnect to the others)",
                    file=sys.stderr,
                    flush=True,
                )
                exits[asyncio.create_task(_restart(replica, delay))] = replica
    finally:
        for task in (stopping, gateway, *exits):
            task.cancel()
        await asyncio.gather(stopping, gateway, *exits, return_exceptions=True)


async def _restart(replica: Replica, delay: float) -> int:
    """Start the replica again after `delay`; returns when that process exits."""
    await asyncio.sleep(delay)
    await replica.start()
    return await replica.wait()


async def run_replica(settings: Settings, index: int) -> int:
    """One replica (the supervisor's child): the gRPC server on its port and socket, as a
    NATS replica, until SIGTERM (exit 0) or until the server ends (exit 1)."""
    from server.serve import SHUTDOWN_GRACE_SECONDS, start_server

    database = await asyncio.to_thread(open_database, settings)
    running = await start_server(
        settings, database, settings.grpc_port + index, replica_socket(settings, index)
    )
    stop_requested = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop_requested.set)
    stopping = asyncio.create_task(stop_requested.wait())
    ended = asyncio.create_task(running.server.wait_for_termination())
    await asyncio.wait({stopping, ended}, return_when=asyncio.FIRST_COMPLETED)
    await running.stop(SHUTDOWN_GRACE_SECONDS)
    for task in (stopping, ended):
        task.cancel()
    await asyncio.gather(stopping, ended, return_exceptions=True)
    database.dispose()
    return 0 if stop_requested.is_set() else 1
