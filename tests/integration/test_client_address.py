"""Whose address the login throttle charges: the real peer's, whichever way a call comes.

Through the gateway, Envoy tells the server the address of the peer it accepted (over a Unix
socket only it can open); a direct caller on the gRPC port is its own TCP peer. A forged
`x-forwarded-for` changes neither. Each case leaves its own throttle row, named after the
address it was charged to.
"""

from __future__ import annotations

import grpc
import httpx
import pytest
import sqlalchemy as sa
from thingwire.auth.v1 import auth_pb2, auth_pb2_grpc

from server.storage.db import Database
from server.storage.models import LoginThrottle
from tests.integration.stack import Stack

pytestmark = pytest.mark.integration

FORGED = (("x-forwarded-for", "198.51.100.7"),)


def _charged_to(stack: Stack, login: str) -> set[str]:
    """The client addresses the failed logins of `login` were charged to."""
    database = Database(stack.db_url)
    try:
        with database.session() as s:
            keys = s.scalars(sa.select(LoginThrottle.key).where(LoginThrottle.key.like("c:%")))
            return {key[2:].split("|", 1)[0] for key in keys if key.endswith(f"|login:{login}")}
    finally:
        database.dispose()


def _grpc_login(target: str, login: str) -> grpc.StatusCode:
    with grpc.insecure_channel(target) as channel:
        stub = auth_pb2_grpc.AuthServiceStub(channel)
        with pytest.raises(grpc.RpcError) as info:
            stub.Login(
                auth_pb2.LoginRequest(email=login, password="wrong-password"),
                metadata=FORGED,
                timeout=10,
            )
        return info.value.code()


@pytest.mark.parametrize("forged", [False, True])
def test_a_rest_client_is_charged_to_its_own_address(stack: Stack, forged: bool) -> None:
    login = f"rest-{forged}@example.com".lower()
    with httpx.Client(base_url=stack.base_url, timeout=15) as client:
        answer = client.post(
            "/auth/login/",
            json={"email": login, "password": "wrong-password"},
            headers=dict(FORGED) if forged else {},
        )
    assert answer.status_code == 401
    assert _charged_to(stack, login) == {"127.0.0.1"}


def test_a_grpc_client_through_the_gateway_is_charged_to_its_own_address(stack: Stack) -> None:
    assert _grpc_login(stack.grpc_target, "via-gateway@example.com") == (
        grpc.StatusCode.UNAUTHENTICATED
    )
    assert _charged_to(stack, "via-gateway@example.com") == {"127.0.0.1"}


def test_a_direct_grpc_client_is_charged_to_its_own_address(stack: Stack) -> None:
    target = f"127.0.0.1:{stack.grpc_port}"
    assert _grpc_login(target, "direct@example.com") == grpc.StatusCode.UNAUTHENTICATED
    assert _charged_to(stack, "direct@example.com") == {"127.0.0.1"}
