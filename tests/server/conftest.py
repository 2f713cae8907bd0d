"""A real in-process grpc.aio server on a free port, over each database kind."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import grpc
import pytest
from thingwire.auth.v1 import auth_pb2_grpc
from thingwire.inputs.v1 import inputs_pb2_grpc

from server.app import RunningServer, create_server
from server.storage.db import Database
from tests.support import LoopThread, ManualClock


@dataclass
class ServerUnderTest:
    """The running server, its database, its clock and stubs connected to it."""

    running: RunningServer
    database: Database
    clock: ManualClock
    channel: grpc.Channel
    auth: auth_pb2_grpc.AuthServiceStub
    inputs: inputs_pb2_grpc.InputServiceStub


@pytest.fixture
def grpc_server(database: Database) -> Iterator[ServerUnderTest]:
    database.migrate()
    clock = ManualClock()
    loop = LoopThread()
    running = loop.run(lambda: create_server(database, "127.0.0.1:0", clock=clock))
    channel = grpc.insecure_channel(f"127.0.0.1:{running.port}")
    try:
        yield ServerUnderTest(
            running=running,
            database=database,
            clock=clock,
            channel=channel,
            auth=auth_pb2_grpc.AuthServiceStub(channel),
            inputs=inputs_pb2_grpc.InputServiceStub(channel),
        )
    finally:
        channel.close()
        loop.run(lambda: running.stop(0))
        loop.close()
