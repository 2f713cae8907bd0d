"""Two server replicas on one database: tokens and throttling are shared, not per process.

The signing key is shared through configuration (one key file), never through the database.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import grpc
import pytest
from thingwire.auth.v1 import auth_pb2, auth_pb2_grpc

from server.app import RunningServer, create_server
from server.config import Settings
from server.security.keys import KeyFile
from server.storage import users
from server.storage.db import Database
from tests.support import LoopThread

PASSWORD = "replica-password"


@contextmanager
def two_replicas(
    database: Database, key_files: tuple[Path, Path]
) -> Iterator[list[auth_pb2_grpc.AuthServiceStub]]:
    """Two servers, each with its own engine and its own view of a key file, on one database.

    Each reads its key file from THINGWIRE_JWT_KEY_FILE, as `thingwire serve` does.
    """
    with database.session() as s:
        users.create_user(s, "r@example.com", PASSWORD, "r")
    second_engine = Database(database.url)
    settings = [Settings.from_env({"THINGWIRE_JWT_KEY_FILE": str(path)}) for path in key_files]
    loop = LoopThread()
    servers: list[RunningServer] = [
        loop.run(create_server(db, keys=KeyFile(cfg.jwt_key_file)))
        for db, cfg in zip((database, second_engine), settings, strict=True)
    ]
    channels = [grpc.insecure_channel(f"127.0.0.1:{s.port}") for s in servers]
    try:
        yield [auth_pb2_grpc.AuthServiceStub(c) for c in channels]
    finally:
        for channel in channels:
            channel.close()
        for server in servers:
            loop.run(server.stop(0))
        loop.close()
        second_engine.dispose()


@pytest.fixture
def replicas(database: Database, tmp_path: Path) -> Iterator[list[auth_pb2_grpc.AuthServiceStub]]:
    """Two replicas configured with the same key file (a shared secret mount, say)."""
    shared = tmp_path / "shared" / "jwt-keys.json"
    with two_replicas(database, (shared, shared)) as stubs:
        yield stubs


def test_replicas_with_their_own_key_files_do_not_share_tokens(
    database: Database, tmp_path: Path
) -> None:
    """The control for the test below: the key comes from configuration, not the database."""
    with two_replicas(database, (tmp_path / "a.json", tmp_path / "b.json")) as (first, second):
        token = first.Login(auth_pb2.LoginRequest(email="r@example.com", password=PASSWORD)).token
        with pytest.raises(grpc.RpcError) as info:
            second.GetCurrentUser(
                auth_pb2.GetCurrentUserRequest(), metadata=(("authorization", f"Bearer {token}"),)
            )
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED


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
