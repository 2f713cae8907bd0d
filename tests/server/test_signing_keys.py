"""Signing keys over real gRPC: key ids, rotation with a grace period, unknown keys refused."""

from __future__ import annotations

import base64
import hmac
import json
import secrets
from datetime import timedelta

import grpc
import jwt
import pytest
from thingwire.auth.v1 import auth_pb2

from server.storage import users
from tests.server.conftest import ServerUnderTest

EMAIL, USERNAME, PASSWORD = "kim@example.com", "kim", "correct horse battery"
ME = auth_pb2.GetCurrentUserRequest()


@pytest.fixture
def srv(grpc_server: ServerUnderTest) -> ServerUnderTest:
    with grpc_server.database.session() as s:
        users.create_user(s, EMAIL, PASSWORD, USERNAME)
    return grpc_server


def login(srv: ServerUnderTest) -> str:
    return srv.auth.Login(auth_pb2.LoginRequest(email=EMAIL, password=PASSWORD)).token


def code_of(srv: ServerUnderTest, token: str) -> grpc.StatusCode:
    """The status of GetCurrentUser with ``token``; OK when it answers."""
    try:
        srv.auth.GetCurrentUser(ME, metadata=(("authorization", f"Bearer {token}"),))
    except grpc.RpcError as error:
        return error.code()
    return grpc.StatusCode.OK


def forged(srv: ServerUnderTest, secret: bytes, kid: str | None) -> str:
    now = int(srv.clock.now.timestamp())
    claims = {"iat": now, "exp": now + 600, "usr": USERNAME}
    return jwt.encode(claims, secret, "HS256", headers=None if kid is None else {"kid": kid})


def test_a_token_names_the_current_key(srv: ServerUnderTest) -> None:
    token = login(srv)
    assert jwt.get_unverified_header(token)["kid"] == srv.keys.ring().current.kid
    assert code_of(srv, token) == grpc.StatusCode.OK


def test_a_retired_key_verifies_during_its_grace_and_not_after(srv: ServerUnderTest) -> None:
    old = login(srv)
    old_kid = srv.keys.ring().current.kid
    srv.keys.rotate(srv.clock.now, grace=timedelta(minutes=30))
    new = login(srv)
    assert jwt.get_unverified_header(new)["kid"] != old_kid
    srv.clock.advance(minutes=29)
    assert code_of(srv, old) == grpc.StatusCode.OK
    srv.clock.advance(minutes=1)  # the grace is over; the token itself is still unexpired
    assert code_of(srv, old) == grpc.StatusCode.UNAUTHENTICATED
    assert code_of(srv, new) == grpc.StatusCode.OK


def test_a_rotation_with_no_grace_cuts_the_old_tokens_at_once(srv: ServerUnderTest) -> None:
    """After a leak: `thingwire key rotate --grace-days 0`."""
    old = login(srv)
    srv.keys.rotate(srv.clock.now, grace=timedelta(0))
    assert code_of(srv, old) == grpc.StatusCode.UNAUTHENTICATED
    assert code_of(srv, login(srv)) == grpc.StatusCode.OK


@pytest.mark.parametrize("kid", ["no-such-key", "", None])
def test_a_token_with_an_unknown_or_no_kid_is_refused(
    srv: ServerUnderTest, kid: str | None
) -> None:
    """Even when signed with the real secret: the kid must name a key of the key file."""
    secret = srv.keys.ring().current.secret
    assert code_of(srv, forged(srv, secret, kid)) == grpc.StatusCode.UNAUTHENTICATED


def test_a_token_signed_with_another_secret_is_refused(srv: ServerUnderTest) -> None:
    kid = srv.keys.ring().current.kid
    stranger = forged(srv, secrets.token_bytes(32), kid)
    assert code_of(srv, stranger) == grpc.StatusCode.UNAUTHENTICATED
    assert code_of(srv, forged(srv, srv.keys.ring().current.secret, kid)) == grpc.StatusCode.OK


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def test_a_non_text_kid_is_refused(srv: ServerUnderTest) -> None:
    """Built by hand: PyJWT will not write such a header, but a client can."""
    now = int(srv.clock.now.timestamp())
    header = _b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": 7}).encode())
    body = _b64(json.dumps({"iat": now, "exp": now + 600, "usr": USERNAME}).encode())
    secret = srv.keys.ring().current.secret
    signature = _b64(hmac.digest(secret, f"{header}.{body}".encode(), "sha256"))
    assert code_of(srv, f"{header}.{body}.{signature}") == grpc.StatusCode.UNAUTHENTICATED
