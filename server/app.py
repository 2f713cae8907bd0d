"""Build and run the grpc.aio server: our services, health, reflection, the interceptor.

`create_server` is apart from `serve` (grpc's examples/python/errors pattern) so tests
start a real server on a free port in-process. `SERVICES` is the one table of our
services: the server registers exactly these, and the interceptor's access levels come
from the same rows, so a service cannot be served without its levels.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import grpc
from google.protobuf.descriptor import ServiceDescriptor
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from thingwire.agent.v1 import agent_pb2, agent_pb2_grpc
from thingwire.auth.v1 import auth_pb2, auth_pb2_grpc
from thingwire.devices.v1 import (
    devices_pb2,
    devices_pb2_grpc,
    dongle_pb2,
    dongle_pb2_grpc,
    stats_pb2,
    stats_pb2_grpc,
)
from thingwire.inputs.v1 import input_data_pb2, input_data_pb2_grpc, inputs_pb2, inputs_pb2_grpc
from thingwire.resources.v1 import resources_pb2, resources_pb2_grpc
from thingwire.telemetry.v1 import logbook_pb2, logbook_pb2_grpc, push_pb2, push_pb2_grpc

from server.auth.authenticator import Authenticator
from server.config import DEFAULT_MAX_DEVICES_PER_USER
from server.gateway_socket import grpc_address as gateway_socket_address
from server.gateway_socket import restrict as restrict_gateway_socket
from server.interceptors import ServerInterceptor, access_levels
from server.link.link import LinkLimits
from server.link.nats_links import NatsLinks
from server.link.nats_router import NatsRouter
from server.rest_interceptor import RestInterceptor, rest_options_of
from server.security.keys import KeyFile, KeyRing
from server.services.agent_service import AgentService
from server.services.auth_service import AuthService
from server.services.device_service import DeviceService
from server.services.device_stats_service import DeviceStatsService, DeviceStatsStreamService
from server.services.dongle_service import DongleCommandService
from server.services.input_data_service import InputDataService
from server.services.inputs_service import InputService
from server.services.logbook_service import LogbookReadService
from server.services.resources_service import ResourceService
from server.services.telemetry_push_service import (
    RejectedRecordService,
    TelemetryPushService,
)
from server.state import AppState, utc_now
from server.storage import login_throttle
from server.storage.db import Database
from server.telemetry import rollups
from server.telemetry.limits import TelemetryLimits
from server.telemetry.retention import Retention

log = logging.getLogger(__name__)

MAINTENANCE_INTERVAL_SECONDS = 300.0


@dataclass(frozen=True)
class Service:
    """One of our gRPC services: its descriptor, its servicer, and how grpc registers it."""

    descriptor: ServiceDescriptor
    servicer: Callable[[AppState], object]
    #: The generated `add_<Name>Servicer_to_server` of the same `_pb2_grpc` module.
    add_to_server: Callable[[object, grpc.aio.Server], None]


#: Every service of ours that the server serves; add a new one here (and nowhere else).
SERVICES: tuple[Service, ...] = (
    Service(
        auth_pb2.DESCRIPTOR.services_by_name["AuthService"],
        AuthService,
        auth_pb2_grpc.add_AuthServiceServicer_to_server,
    ),
    Service(
        inputs_pb2.DESCRIPTOR.services_by_name["InputService"],
        InputService,
        inputs_pb2_grpc.add_InputServiceServicer_to_server,
    ),
    Service(
        input_data_pb2.DESCRIPTOR.services_by_name["InputDataService"],
        InputDataService,
        input_data_pb2_grpc.add_InputDataServiceServicer_to_server,
    ),
    Service(
        devices_pb2.DESCRIPTOR.services_by_name["DeviceService"],
        DeviceService,
        devices_pb2_grpc.add_DeviceServiceServicer_to_server,
    ),
    Service(
        agent_pb2.DESCRIPTOR.services_by_name["AgentService"],
        AgentService,
        agent_pb2_grpc.add_AgentServiceServicer_to_server,
    ),
    Service(
        resources_pb2.DESCRIPTOR.services_by_name["ResourceService"],
        ResourceService,
        resources_pb2_grpc.add_ResourceServiceServicer_to_server,
    ),
    Service(
        stats_pb2.DESCRIPTOR.services_by_name["DeviceStatsService"],
        DeviceStatsService,
        stats_pb2_grpc.add_DeviceStatsServiceServicer_to_server,
    ),
    Service(
        stats_pb2.DESCRIPTOR.services_by_name["DeviceStatsStreamService"],
        DeviceStatsStreamService,
        stats_pb2_grpc.add_DeviceStatsStreamServiceServicer_to_server,
    ),
    Service(
        dongle_pb2.DESCRIPTOR.services_by_name["DongleCommandService"],
        DongleCommandService,
        dongle_pb2_grpc.add_DongleCommandServiceServicer_to_server,
    ),
    Service(
        logbook_pb2.DESCRIPTOR.services_by_name["LogbookReadService"],
        LogbookReadService,
        logbook_pb2_grpc.add_LogbookReadServiceServicer_to_server,
    ),
    Service(
        push_pb2.DESCRIPTOR.services_by_name["TelemetryPushService"],
        TelemetryPushService,
        push_pb2_grpc.add_TelemetryPushServiceServicer_to_server,
    ),
    Service(
        push_pb2.DESCRIPTOR.services_by_name["RejectedRecordService"],
        RejectedRecordService,
        push_pb2_grpc.add_RejectedRecordServiceServicer_to_server,
    ),
)
#: Infrastructure every client may use without credentials.
OPEN_SERVICES = (
    health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
    reflection.SERVICE_NAME,
)
#: Metadata a call may carry. Above the gateway's limits (16 KiB of request headers, and the
#: REST path again as x-envoy-original-path), so that the gateway answers 431/414 for an
#: oversized request and the server's RESOURCE_EXHAUSTED (a retryable 429) never does.
MAX_METADATA_BYTES = 64 * 1024
#: The most often a client (a direct agent, the gateway) may PING a quiet connection before
#: the server counts it as abuse; agents must not ping more often (docs/device-link.md).
MIN_CLIENT_PING_INTERVAL_MS = 5_000


def keepalive_options(limits: LinkLimits) -> tuple[tuple[str, int], ...]:
    """Devices keep a stream open for hours: the server PINGs every connection (a direct
    agent's, the gateway's) and drops one whose PING goes unanswered, and it accepts the
    PINGs of agents and of the gateway (which pings every `keepalive_s`, too)."""
    interval_ms = int(limits.keepalive_s * 1000)
    return (
        ("grpc.keepalive_time_ms", interval_ms),
        ("grpc.keepalive_timeout_ms", int(limits.keepalive_timeout_s * 1000)),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.max_pings_without_data", 0),
        (
            "grpc.http2.min_ping_interval_without_data_ms",
            min(MIN_CLIENT_PING_INTERVAL_MS, interval_ms // 2),
        ),
    )


@dataclass
class RunningServer:
    """A started server, the port it listens on and its health servicer."""

    server: grpc.aio.Server
    port: int
    health: health.aio.HealthServicer
    state: AppState

    maintenance: asyncio.Task[None]
    #: The Unix socket only the gateway uses, if the server listens on one.
    gateway_socket: Path | None = None

    async def stop(self, grace: float = 5.0) -> None:
        """Report NOT_SERVING, end the stats streams, send the devices away (each told when
        to come back), let calls in flight finish for `grace` seconds, then write the
        links' final figures."""
        # Every live object is kept out of the collector until the stop is over: what the
        # stop allocates (a GoAway per link, each stream's ending) would otherwise set off
        # full collections over every live link, and with 10,000 links those took seconds
        # each (docs/device-link.md, "Many devices at once").
        gc.freeze()
        try:
            await self._stop(grace)
        finally:
            gc.unfreeze()

    async def _stop(self, grace: float) -> None:
        began = time.monotonic()
        await self.health.enter_graceful_shutdown()
        self.state.links.close_watchers()
        self.state.links.go_away_all(self.state.link_limits.go_away_window_s)
        sent_away = time.monotonic()
        await self.server.stop(grace)
        stopped = time.monotonic()
        if isinstance(self.state.links, NatsLinks):
            await self.state.links.stop()
        await self.state.link_stats.stop()
        await self.state.telemetry.stop()
        self.maintenance.cancel()
        await asyncio.gather(self.maintenance, return_exceptions=True)
        self.state.logins.close()
        log.info(
            "server stopped: links sent away in %.2f s, rpcs ended in %.2f s, the rest %.2f s",
            sent_away - began,
            stopped - sent_away,
            time.monotonic() - stopped,
        )


async def create_server(
    database: Database,
    address: str = "127.0.0.1:0",
    *,
    max_message_bytes: int = 8 * 1024 * 1024,
    clock: Callable[[], datetime] = utc_now,
    gateway_socket: Path | None = None,
    keys: KeyFile | KeyRing | None = None,
    link_limits: LinkLimits | None = None,
    max_devices_per_user: int = DEFAULT_MAX_DEVICES_PER_USER,
    retention: Retention | None = None,
    telemetry_limits: TelemetryLimits | None = None,
    nats_url: str | None = None,
) -> RunningServer:
    """Start a server on `address` (port 0 picks a free one) over a migrated database.

    With `gateway_socket` it also listens on that Unix socket, for the gateway alone: only
    calls arriving there may name their client's address (`server/request_origin.py`).
    ``keys`` sign and verify its tokens (see `AppState.open`; serve passes the key file).
    ``link_limits`` bound every device link (docs/device-link.md).
    ``max_devices_per_user`` is `Settings.max_devices_per_user`; ``retention`` applies
    `Settings.telemetry_retention_days` (None: telemetry is kept forever);
    ``telemetry_limits`` are the `Settings.telemetry_*` bounds of ingest.
    ``nats_url`` makes the server a replica: device calls and presence go through NATS
    (docs/architecture.md, "Scale-out"); None is one process on its own.
    """
    gateway_address = gateway_socket_address(gateway_socket) if gateway_socket else None
    state = await AppState.open(
        database,
        clock,
        keys,
        link_limits,
        max_devices_per_user,
        retention=retention,
        telemetry_limits=telemetry_limits,
        links=NatsLinks(nats_url) if nats_url else None,
    )
    if not isinstance(state.links, NatsLinks):
        # No link is live before this server serves: a device still marked connected was
        # left so by a process that died (docs/device-link.md, "What survives a restart").
        await state.link_stats.sweep()
    authenticator = Authenticator(database, state.signer, clock)
    server = grpc.aio.server(
        interceptors=[
            # Outermost first: the rpc's REST options are known to every error path inside.
            RestInterceptor(rest_options_of(service.descriptor for service in SERVICES)),
            ServerInterceptor(
                authenticator,
                access_levels(service.descriptor for service in SERVICES),
                OPEN_SERVICES,
            ),
        ],
        options=[
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_metadata_size", MAX_METADATA_BYTES),
            ("grpc.max_send_message_length", max_message_bytes),
            # Without this, a second server binds the same port and they share its calls.
            ("grpc.so_reuseport", 0),
            *keepalive_options(state.link_limits),
        ],
    )
    for service in SERVICES:
        service.add_to_server(service.servicer(state), server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    names = [service.descriptor.full_name for service in SERVICES]
    reflection.enable_server_reflection([*names, *OPEN_SERVICES], server)
    port = _listen(server, address, state)
    if gateway_socket is not None and gateway_address is not None:
        _listen(server, gateway_address, state)  # grpc creates the socket file here
        restrict_gateway_socket(gateway_socket)
    await server.start()
    for name in ["", *names]:
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    log.info("gRPC server listening on %s (port %d)", address, port)
    state.link_stats.start()
    if isinstance(state.links, NatsLinks):
        start_replica(state, state.links)
    return RunningServer(
        server=server,
        port=port,
        health=health_servicer,
        state=state,
        maintenance=asyncio.create_task(_maintain(state)),
        gateway_socket=gateway_socket,
    )


def start_replica(state: AppState, links: NatsLinks) -> None:
    """Connect to NATS in the background; once it answers, reset the devices that the row
    says are connected but no replica holds (their replica died)."""
    router = state.router
    assert isinstance(router, NatsRouter)
    links.on_replaced = state.link_stats.forget
    links.start(lambda: _sweep_unheld(state, links, router))


async def _sweep_unheld(state: AppState, links: NatsLinks, router: NatsRouter) -> None:
    try:
        await links.sweep_unheld(state.database, state.clock, router.held_anywhere)
    except Exception:  # the database may be away: the next replica start tries again
        log.exception("the sweep of devices no replica holds failed")


def _listen(server: grpc.aio.Server, address: str, state: AppState) -> int:
    """Bind `address` and return its port, or raise OSError with a one-line reason."""
    try:
        port = int(server.add_insecure_port(address))
    except RuntimeError:  # grpc's "Failed to bind"
        port = 0
    if port == 0:
        state.logins.close()
        raise OSError(f"cannot listen on {address}: the address is in use or unavailable")
    return port


async def _maintain(state: AppState) -> None:
    """Housekeeping: fold dirty rollups every second (their own task), and every few
    minutes drop login-throttle rows that no longer matter and remove telemetry past its
    retention (in bounded batches, docs/telemetry-reads.md)."""
    folding = asyncio.create_task(rollups.keep_folding(state.database))
    try:
        await _housekeep(state)
    finally:
        folding.cancel()
        await asyncio.gather(folding, return_exceptions=True)


async def _housekeep(state: AppState) -> None:
    while True:
        await asyncio.sleep(MAINTENANCE_INTERVAL_SECONDS)
        try:
            pruned = await state.database.run(lambda s: login_throttle.prune(s, state.clock()))
        except Exception:  # the database may be briefly away; try again next round
            log.exception("login throttle pruning failed")
        else:
            log.debug("pruned %d login throttle rows", pruned)
        if not state.retention.enabled:
            continue
        try:
            removed = await state.retention.run(state.database, state.clock())
        except Exception:  # as above; what was removed stays removed, the rest waits
            log.exception("telemetry retention failed")
            continue
        log.info("telemetry retention removed %s", removed)


__all__ = ["OPEN_SERVICES", "SERVICES", "RunningServer", "Service", "create_server"]
