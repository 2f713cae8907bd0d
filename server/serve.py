"""`thingwire serve`: the gRPC server and the cloud Envoy, supervised as one unit.

Envoy is started by this long-lived process (docs/design.md, "Gateway facts": a launching
shell's exit was seen killing it). If either half dies, the other is stopped and serve exits
non-zero, so an operator never runs half a stack. SIGTERM and SIGINT stop both cleanly.
"""

from __future__ import annotations

import asyncio
import gc
import importlib.resources
import logging
import signal
import sys
import time
from pathlib import Path

from gateway.config import GatewaySpec, cloud_spec
from gateway.launcher import Envoy, check_port_free
from server.app import RunningServer, create_server
from server.config import Settings
from server.link.link import LinkLimits
from server.security.keys import KeyFile
from server.state import open_database
from server.storage.db import Database
from server.telemetry.limits import TelemetryLimits
from server.telemetry.retention import Retention

log = logging.getLogger(__name__)

# The descriptor image is package data of the generated `thingwire` package (the wheel ships
# it there). A wheel is installed unpacked, so the resource is a real file Envoy can open.
DESCRIPTOR_PATH = Path(str(importlib.resources.files("thingwire") / "thingwire.binpb"))
SHUTDOWN_GRACE_SECONDS = 5.0
#: Where, under the state directory, the server listens for the gateway alone.
GATEWAY_SOCKET = Path("server") / "gateway.sock"


def banner(settings: Settings) -> str:
    """What the operator needs to start using the stack."""
    base = f"http://127.0.0.1:{settings.http_port}"
    cli = Path(sys.executable).with_name("thingwire")
    return "\n".join(
        [
            f"thingwire is up: REST and gRPC on {base} (database {settings.db_url})",
            f"  create a user: {cli} user create --email you@example.com"
            " --password '<8+ chars>' --username you",
            f"  REST:   curl -X POST {base}/auth/login/ -H 'Content-Type: application/json'"
            ' -d \'{"email": "...", "password": "..."}\'',
            f"  gRPC:   generated stubs on 127.0.0.1:{settings.http_port} (reflection is on,"
            f" e.g. grpcurl -plaintext 127.0.0.1:{settings.http_port} list)",
            f"  health: {cli} status --target 127.0.0.1:{settings.http_port}",
            "  stop with Ctrl-C",
        ]
    )


async def start_server(
    settings: Settings, database: Database, grpc_port: int, gateway_socket: Path
) -> RunningServer:
    """The gRPC server as `thingwire serve` configures it, on `grpc_port` and on the
    gateway's socket; a replica (NATS) when `THINGWIRE_NATS_URL` is set."""
    return await create_server(
        database,
        f"127.0.0.1:{grpc_port}",
        keys=KeyFile(settings.jwt_key_file),
        # A REST body grows when transcoded (an array of records roughly doubles as
        # protobuf): accept what the gateway lets through, with room to spare.
        max_message_bytes=4 * settings.max_body_bytes,
        gateway_socket=gateway_socket,
        max_devices_per_user=settings.max_devices_per_user,
        link_limits=link_limits(settings),
        retention=Retention(days=settings.telemetry_retention_days),
        telemetry_limits=TelemetryLimits.from_settings(settings),
        nats_url=settings.nats_url,
    )


def gateway_spec(settings: Settings, sockets: list[Path]) -> GatewaySpec:
    """The cloud gateway in front of the server's (or the replicas') gateway sockets."""
    return cloud_spec(
        http_port=settings.http_port,
        grpc_port=settings.grpc_port,
        admin_port=settings.envoy_admin_port,
        descriptor=DESCRIPTOR_PATH,
        max_request_body_bytes=settings.max_body_bytes,
        upstream_socket=sockets[0],
        more_upstream_sockets=tuple(sockets[1:]),
        keepalive_interval_s=settings.link_keepalive_s,
        keepalive_timeout_s=settings.link_keepalive_timeout_s,
    )


def link_limits(settings: Settings) -> LinkLimits:
    """The THINGWIRE_LINK_* settings and the resource call deadline, as the server's limits
    for every device link."""
    return LinkLimits(
        max_calls_in_flight=settings.link_max_calls_in_flight,
        go_away_window_s=settings.link_go_away_window_s,
        keepalive_s=settings.link_keepalive_s,
        keepalive_timeout_s=settings.link_keepalive_timeout_s,
        stats_interval_s=settings.link_stats_interval_s,
        call_timeout_s=settings.resource_call_timeout_s,
        max_upload_bytes=settings.link_max_upload_bytes,
        max_upload_records=settings.link_max_upload_records,
        max_uploads_in_flight=settings.link_max_uploads_in_flight,
    )


async def serve(settings: Settings) -> int:
    """Run until a signal (exit 0) or until one half dies (exit 1)."""
    # Envoy reaches the server over a Unix socket only it can open, so that only Envoy may
    # tell the server a client's address; the TCP port stays for direct gRPC and `status`.
    gateway_socket = (settings.state_dir / GATEWAY_SOCKET).absolute()
    envoy = Envoy(
        gateway_spec(settings, [gateway_socket]), state_dir=settings.state_dir / "gateway"
    )
    # Every port is checked before anything starts, so a clash is one clear message rather
    # than half a stack (or, on the gRPC port, two servers silently sharing it).
    check_port_free(settings.grpc_port, "127.0.0.1", "gRPC server port")
    envoy.check_ports()
    database = await asyncio.to_thread(open_database, settings)
    running = await start_server(settings, database, settings.grpc_port, gateway_socket)
    try:
        await envoy.start()
        await envoy.wait_ready(timeout=30)
    except Exception:
        await envoy.stop(SHUTDOWN_GRACE_SECONDS)
        await running.stop(0)
        database.dispose()
        raise

    # What start-up made (modules, the ORM's and protobuf's tables, the server) lives as
    # long as the process: kept out of every collection, so that the full collections a
    # fleet's links set off do not walk it again each time (docs/device-link.md, "Many
    # devices at once").
    gc.freeze()
    stop_requested = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop_requested.set)
    print(banner(settings), flush=True)

    watchers = {
        asyncio.create_task(stop_requested.wait()): "signal",
        asyncio.create_task(envoy.wait()): "envoy",
        asyncio.create_task(running.server.wait_for_termination()): "server",
    }
    done, pending = await asyncio.wait(watchers, return_when=asyncio.FIRST_COMPLETED)
    reason = watchers[next(iter(done))]
    # The server first: it refuses new calls and finishes those in flight while Envoy still
    # relays their answers; then Envoy. Stop before cancelling the watchers: cancelling
    # wait_for_termination mid-flight would also cancel the server's own shutdown.
    await running.stop(SHUTDOWN_GRACE_SECONDS)
    envoy_began = time.monotonic()
    await envoy.stop(SHUTDOWN_GRACE_SECONDS)
    log.info("gateway stopped in %.2f s", time.monotonic() - envoy_began)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    database.dispose()
    if reason == "signal":
        log.info("stopped on signal")
        return 0
    print(
        f"thingwire: error: the {reason} exited unexpectedly"
        + (f" (envoy exit code {envoy.returncode})" if reason == "envoy" else "")
        + "; stopped the rest",
        file=sys.stderr,
        flush=True,
    )
    return 1
