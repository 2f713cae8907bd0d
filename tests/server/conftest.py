"""A real in-process grpc.aio server on a free port, over each database kind."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from thingwire.auth.v1 import auth_pb2_grpc
from thingwire.inputs.v1 import inputs_pb2_grpc

from server.app import RunningServer, create_server
from server.security.keys import KeyFile
from server.storage.db import Database
from tests.support import LoopThread, ManualClock


@dataclass
class ServerUnderTest:
    """The running server, its database, clock and key file, and stubs connected to it.

    `channel` is a direct client on the TCP port; `gateway_auth` calls over the Unix socket
    as the gateway does, so its x-forwarded-for is believed.
    """

    running: RunningServer
    database: Database
    clock: ManualClock
    keys: KeyFile
    channel: grpc.Channel
    auth: auth_pb2_grpc.AuthServiceStub
    inputs: inputs_pb2_grpc.InputServiceStub
    gateway_auth: auth_pb2_grpc.AuthServiceStub


@pytest.fixture
def grpc_server(database: Database, tmp_path: Path) -> Iterator[ServerUnderTest]:
    database.migrate()
    clock = ManualClock()
    keys = KeyFile(tmp_path / "jwt-keys.json")
    loop = LoopThread()
    socket = tmp_path / "run" / "gateway.sock"
    running = loop.run(
        lambda: create_server(
            database, "127.0.0.1:0", clock=clock, gateway_socket=socket, keys=keys
        )
    )
    channel = grpc.insecure_channel(f"127.0.0.1:{running.port}")
    gateway_channel = grpc.insecure_channel(f"unix:{socket}")
    try:
        yield ServerUnderTest(
            running=running,
            database=database,
            clock=clock,
            keys=keys,
            channel=channel,
            auth=auth_pb2_grpc.AuthServiceStub(channel),
            inputs=inputs_pb2_grpc.InputServiceStub(channel),
            gateway_auth=auth_pb2_grpc.AuthServiceStub(gateway_channel),
        )
    finally:
        gateway_channel.close()
        channel.close()
        loop.run(lambda: running.stop(0))
        loop.close()
