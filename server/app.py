"""Build and run the grpc.aio server: our services, health, reflection, the interceptor.

`create_server` is apart from `serve` (grpc's examples/python/errors pattern) so tests
start a real server on a free port in-process.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from thingwire.auth.v1 import auth_pb2, auth_pb2_grpc
from thingwire.inputs.v1 import inputs_pb2, inputs_pb2_grpc

from server.auth.authenticator import Authenticator
from server.interceptors import ServerInterceptor, access_levels
from server.security.keys import KeyFile, KeyRing
from server.services.auth_service import AuthService
from server.services.inputs_service import InputService
from server.state import AppState, utc_now
from server.storage import login_throttle
from server.storage.db import Database

log = logging.getLogger(__name__)

MAINTENANCE_INTERVAL_SECONDS = 300.0

SERVICES = (
    auth_pb2.DESCRIPTOR.services_by_name["AuthService"],
    inputs_pb2.DESCRIPTOR.services_by_name["InputService"],
)
# Devices keep a stream open for hours: the server must accept their keepalive pings.
KEEPALIVE_OPTIONS = (
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 1),
)


@dataclass
class RunningServer:
    """A started server, the port it listens on and its health servicer."""

    server: grpc.aio.Server
    port: int
    health: health.aio.HealthServicer
    state: AppState

    maintenance: asyncio.Task[None]

    async def stop(self, grace: float = 5.0) -> None:
        """Report NOT_SERVING, then let calls in flight finish for `grace` seconds."""
        await self.health.enter_graceful_shutdown()
        await self.server.stop(grace)
        self.maintenance.cancel()
        await asyncio.gather(self.maintenance, return_exceptions=True)
        self.state.logins.close()


async def create_server(
    database: Database,
    address: str = "127.0.0.1:0",
    *,
    max_message_bytes: int = 8 * 1024 * 1024,
    clock: Callable[[], datetime] = utc_now,
    keys: KeyFile | KeyRing | None = None,
) -> RunningServer:
    """Start a server on `address` (port 0 picks a free one) over a migrated database.

    ``keys`` sign and verify its tokens (see `AppState.open`; serve passes the key file).
    """
    state = await AppState.open(database, clock, keys)
    authenticator = Authenticator(database, state.signer, clock)
    server = grpc.aio.server(
        interceptors=[ServerInterceptor(authenticator, access_levels(SERVICES))],
        options=[
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", max_message_bytes),
            # Without this, a second server binds the same port and they share its calls.
            ("grpc.so_reuseport", 0),
            *KEEPALIVE_OPTIONS,
        ],
    )
    auth_pb2_grpc.add_AuthServiceServicer_to_server(AuthService(state), server)
    inputs_pb2_grpc.add_InputServiceServicer_to_server(InputService(state), server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    names = [s.full_name for s in SERVICES]
    reflection.enable_server_reflection(
        [
            *names,
            health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
            reflection.SERVICE_NAME,
        ],
        server,
    )
    try:
        port = server.add_insecure_port(address)
    except RuntimeError:  # grpc's "Failed to bind"
        port = 0
    if port == 0:
        state.logins.close()
        raise OSError(f"cannot listen on {address}: the address is in use or unavailable")
    await server.start()
    for name in ["", *names]:
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    log.info("gRPC server listening on %s (port %d)", address, port)
    return RunningServer(
        server=server,
        port=port,
        health=health_servicer,
        state=state,
        maintenance=asyncio.create_task(_maintain(state)),
    )


async def _maintain(state: AppState) -> None:
    """Housekeeping every few minutes: drop login-throttle rows that no longer matter."""
    while True:
        await asyncio.sleep(MAINTENANCE_INTERVAL_SECONDS)
        try:
            pruned = await state.database.run(lambda s: login_throttle.prune(s, state.clock()))
        except Exception:  # the database may be briefly away; try again next round
            log.exception("login throttle pruning failed")
            continue
        log.debug("pruned %d login throttle rows", pruned)


__all__ = ["SERVICES", "RunningServer", "create_server"]
