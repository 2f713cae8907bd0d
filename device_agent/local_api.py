"""The device's Local API: the LocalService on a Unix socket and the device gateway before it.

`thingwire agent` runs both for as long as it runs, whether or not the cloud is reachable
(docs/device-side.md). The gRPC server listens on `<state dir>/local-api/local.sock`, a
socket only the agent's user may open; Envoy listens on THINGWIRE_LOCAL_PORT (9000) at
THINGWIRE_AGENT_LOCAL_HOST (loopback unless set, the hotspot's address on a real device)
and transcodes the documented REST paths onto it.
"""

from __future__ import annotations

import importlib.resources
import logging
from pathlib import Path

import grpc
from thingwire.local.v1 import local_pb2_grpc

from device_agent.commands.settings import MAX_CMD_TIMEOUT_S
from device_agent.local_identity import LocalIdentity
from device_agent.local_service import LocalServicer
from gateway.config import device_spec
from gateway.launcher import Envoy
from server.gateway_socket import grpc_address, restrict

__all__ = ["DESCRIPTOR_PATH", "LocalApi"]

log = logging.getLogger(__name__)

DESCRIPTOR_PATH = Path(str(importlib.resources.files("thingwire") / "thingwire.binpb"))
SOCKET_NAME = "local.sock"
STOP_GRACE_SECONDS = 2.0
#: Seconds the gateway waits beyond the longest command timeout.
GATEWAY_MARGIN_S = 30.0


class LocalApi:
    """The LocalService's server and the device gateway, started and stopped together."""

    def __init__(
        self,
        servicer: LocalServicer,
        *,
        state_dir: Path,
        port: int,
        admin_port: int,
        host: str = "127.0.0.1",
    ) -> None:
        self._servicer = servicer
        self._dir = state_dir / "local-api"
        self._socket = self._dir / SOCKET_NAME
        spec = device_spec(
            local_port=port,
            agent_grpc_port=port,  # unused: the upstream is the socket
            admin_port=admin_port,
            descriptor=DESCRIPTOR_PATH,
            upstream_socket=self._socket.absolute(),
            listen_host=host,
            max_request_body_bytes=1024 * 1024,
            # A command may run for as long as cmd.run's longest timeout: the gateway must
            # not cut it first (docs/device-side.md, "Processes and ports").
            unary_timeout_s=MAX_CMD_TIMEOUT_S + GATEWAY_MARGIN_S,
            rest_idle_timeout_s=MAX_CMD_TIMEOUT_S + GATEWAY_MARGIN_S,
        )
        self.envoy = Envoy(spec, state_dir=self._dir / "gateway")
        self._server: grpc.aio.Server | None = None
        self.port = port
        self.host = host

    @property
    def identity(self) -> LocalIdentity:
        """The identity the Local API answers with (the agent updates it from Welcomes)."""
        return self._servicer.identity

    async def start(self) -> None:
        """The server, then Envoy; returns once Envoy answers. GatewayError or OSError."""
        self.envoy.check_ports()
        server = grpc.aio.server()
        local_pb2_grpc.add_LocalServiceServicer_to_server(self._servicer, server)
        server.add_insecure_port(grpc_address(self._socket))
        await server.start()
        restrict(self._socket)
        self._server = server
        try:
            await self.envoy.start()
            await self.envoy.wait_ready(timeout=30)
        except BaseException:
            await self.stop()
            raise
        log.info("Local API on http://%s:%d/", self.host, self.port)

    async def wait_gateway(self) -> int:
        """Until the device gateway exits; its exit code."""
        return await self.envoy.wait()

    async def stop(self) -> None:
        """Envoy first (no new requests), then the server."""
        await self.envoy.stop(STOP_GRACE_SECONDS)
        if self._server is not None:
            await self._server.stop(STOP_GRACE_SECONDS)
            self._server = None
