"""Password logins: throttled per client through a real server; bounded argon2 queue."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import grpc
from thingwire.auth.v1 import auth_pb2

from server.auth.passwords import PasswordLogins
from server.errors import Throttled
from server.storage import users
from server.storage.db import Database
from tests.server.conftest import ServerUnderTest

PASSWORD = "per-client-password"


def login_from(srv: ServerUnderTest, address: str, password: str) -> grpc.StatusCode:
    try:
        srv.auth.Login(
            auth_pb2.LoginRequest(email="pat@example.com", password=password),
            metadata=(("x-forwarded-for", address),),
        )
    except grpc.RpcError as error:
        return error.code()
    return grpc.StatusCode.OK


def test_an_attacker_address_does_not_lock_the_owner_out(grpc_server: ServerUnderTest) -> None:
    with grpc_server.database.session() as s:
        users.create_user(s, "pat@example.com", PASSWORD, "pat")
    for _ in range(5):
        assert login_from(grpc_server, "198.51.100.66", "guess") == grpc.StatusCode.UNAUTHENTICATED
    assert login_from(grpc_server, "198.51.100.66", PASSWORD) == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert login_from(grpc_server, "203.0.113.7", PASSWORD) == grpc.StatusCode.OK


def test_logins_beyond_capacity_are_refused_at_once(database: Database) -> None:
    logins = PasswordLogins(database, workers=1, max_waiting=0)

    async def two_at_once() -> tuple[object, object]:
        now = datetime.now(UTC)
        return await asyncio.gather(
            logins.check("a@example.com", "x" * 8, "c", now),
            logins.check("b@example.com", "x" * 8, "c", now),
            return_exceptions=True,
        )

    try:
        first, second = asyncio.run(two_at_once())
    finally:
        logins.close()
    assert isinstance(second, Throttled)
    assert second.retry_after == 1
    assert not isinstance(first, Throttled)  # it ran: an unknown account, so Unauthenticated
