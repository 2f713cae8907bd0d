"""Two server replicas on one database: tokens and throttling are shared, not per process."""

from __future__ import annotations

import functools
from collections.abc import Iterator

import grpc
import pytest
from thingwire.auth.v1 import auth_pb2, auth_pb2_grpc

from server.app import create_server
from server.storage import users
from server.storage.db import Database
from tests.support import LoopThread

PASSWORD = "replica-password"


@pytest.fixture
def replicas(database: Database) -> Iterator[list[auth_pb2_grpc.AuthServiceStub]]:
    """Two servers, each with its own engine, on the same database."""
    with database.session() as s:
        users.create_user(s, "r@example.com", PASSWORD, "r")
    second_engine = Database(database.url)
    loop = LoopThread()
    servers = [loop.run(functools.partial(create_server, db)) for db in (database, second_engine)]
    channels = [grpc.insecure_channel(f"127.0.0.1:{s.port}") for s in servers]
    try:
        yield [auth_pb2_grpc.AuthServiceStub(c) for c in channels]
    finally:
        for channel in channels:
            channel.close()
        for server in servers:
            loop.run(functools.partial(server.stop, 0))
        loop.close()
        second_engine.dispose()


def test_a_token_from_one_replica_works_on_the_other(
    replicas: list[auth_pb2_grpc.AuthServiceStub],
) -> None:
    first, second = replicas
    token = first.Login(auth_pb2.LoginRequest(email="r@example.com", password=PASSWORD)).token
    me = second.GetCurrentUser(
        auth_pb2.GetCurrentUserRequest(), metadata=(("authorization", f"Bearer {token}"),)
    )
    assert me.username == "r"


def test_a_refresh_token_is_spent_on_every_replica(
    replicas: list[auth_pb2_grpc.AuthServiceStub],
) -> None:
    first, second = replicas
    pair = first.CreateToken(
        auth_pb2.CreateTokenRequest(grant_type="password", username="r", password=PASSWORD)
    )
    refresh = auth_pb2.CreateTokenRequest(
        grant_type="refresh_token", refresh_token=pair.refresh_token
    )
    assert second.CreateToken(refresh).access_token
    with pytest.raises(grpc.RpcError) as info:
        first.CreateToken(refresh)
    assert info.value.details() == "invalid refresh token"


def test_failed_logins_count_across_replicas(
    replicas: list[auth_pb2_grpc.AuthServiceStub],
) -> None:
    wrong = auth_pb2.LoginRequest(email="r@example.com", password="wrong")
    for attempt in range(5):
        with pytest.raises(grpc.RpcError):
            replicas[attempt % 2].Login(wrong)
    with pytest.raises(grpc.RpcError) as info:
        replicas[1].Login(auth_pb2.LoginRequest(email="r@example.com", password=PASSWORD))
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_two_servers_cannot_share_one_port(database: Database) -> None:
    """gRPC would allow it (SO_REUSEPORT) and split calls between them; we refuse."""
    loop = LoopThread()
    first = loop.run(lambda: create_server(database))
    try:
        with pytest.raises(OSError, match="in use"):
            loop.run(lambda: create_server(database, f"127.0.0.1:{first.port}"))
    finally:
        loop.run(lambda: first.stop(0))
        loop.close()
