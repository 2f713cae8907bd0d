"""DeviceService over real gRPC, and device tokens as credentials, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import grpc
import jwt
import pytest
import sqlalchemy as sa
from google.protobuf import json_format, struct_pb2
from thingwire.auth.v1 import auth_pb2
from thingwire.devices.v1 import devices_pb2, devices_pb2_grpc
from thingwire.options.v1 import options_pb2

from server.auth.authenticator import Authenticator
from server.auth.principal import Action, Permission, UserPrincipal
from server.errors import Unauthenticated
from server.storage import users
from server.storage.models import Device
from tests.server.conftest import ServerUnderTest

EMAIL, USERNAME, PASSWORD = "ada@example.com", "ada", "correct horse battery"
Access = options_pb2.Access


@pytest.fixture
def srv(grpc_server: ServerUnderTest) -> ServerUnderTest:
    with grpc_server.database.session() as s:
        users.create_user(s, EMAIL, PASSWORD, USERNAME)
        users.create_user(s, "bob@example.com", "bob's password", "bob")
    return grpc_server


@pytest.fixture
def stub(srv: ServerUnderTest) -> devices_pb2_grpc.DeviceServiceStub:
    return devices_pb2_grpc.DeviceServiceStub(srv.channel)


def bearer(token: str) -> tuple[tuple[str, str]]:
    return (("authorization", f"Bearer {token}"),)


def login(srv: ServerUnderTest, email: str = EMAIL, password: str = PASSWORD) -> str:
    return srv.auth.Login(auth_pb2.LoginRequest(email=email, password=password)).token


def code_of(call: Any, *args: Any, **kwargs: Any) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as info:
        call(*args, **kwargs)
    return info.value.code(), info.value.details()


def add_device(stub: devices_pb2_grpc.DeviceServiceStub, session: str, device: str) -> None:
    stub.CreateDevice(
        devices_pb2.CreateDeviceRequest(
            user_id=USERNAME, device_id=device, device_description="", device_credentials="c"
        ),
        metadata=bearer(session),
    )


def new_token(
    stub: devices_pb2_grpc.DeviceServiceStub,
    session: str,
    device: str = "door",
    resources: list[str] | None = None,
    expiration_ms: int = 0,
) -> devices_pb2.CreateDeviceTokenResponse:
    request = devices_pb2.CreateDeviceTokenRequest(
        user_id=USERNAME, device_id=device, token_name="Door", token_expiration=expiration_ms
    )
    if resources is not None:
        request.token_resources.CopyFrom(json_format.ParseDict(resources, struct_pb2.Value()))
    return stub.CreateDeviceToken(request, metadata=bearer(session))


def authenticate(srv: ServerUnderTest, token: str, access: int) -> Any:
    """What the interceptor makes of ``token`` for an rpc of ``access``."""
    authenticator = Authenticator(srv.database, srv.running.state.signer, srv.clock)
    return asyncio.run(authenticator.authenticate(dict(bearer(token)), access))


def test_the_list_shows_devices_with_their_connection(
    srv: ServerUnderTest, stub: devices_pb2_grpc.DeviceServiceStub
) -> None:
    session = login(srv)
    add_device(stub, session, "nodemcu")
    with srv.database.session() as s:
        s.execute(sa.update(Device).values(connected=True, connected_time=srv.clock.now))
    listing = stub.ListDevices(
        devices_pb2.ListDevicesRequest(user_id=USERNAME), metadata=bearer(session)
    )
    assert json_format.MessageToDict(listing) == [
        {
            "device": "nodemcu",
            "description": "",
            "connection": {"active": True, "ts": int(srv.clock.now.timestamp() * 1000)},
        }
    ]


def test_a_device_token_carries_the_seed_claims(
    srv: ServerUnderTest, stub: devices_pb2_grpc.DeviceServiceStub
) -> None:
    session = login(srv)
    add_device(stub, session, "door")
    expiry = srv.clock.now + timedelta(days=1)
    created = new_token(
        stub, session, resources=["open", "close"], expiration_ms=int(expiry.timestamp() * 1000)
    )
    claims = jwt.decode(created.token, options={"verify_signature": False})
    assert list(claims) == ["dev", "exp", "iat", "jti", "res", "usr"]
    assert claims == {
        "dev": "door",
        "exp": int(expiry.timestamp()),
        "iat": int(srv.clock.now.timestamp()),
        "jti": created.id,
        "res": ["open", "close"],
        "usr": USERNAME,
    }
    plain = new_token(stub, session)
    assert list(jwt.decode(plain.token, options={"verify_signature": False})) == [
        "dev",
        "iat",
        "jti",
        "usr",
    ]


def test_the_list_shows_the_token_that_was_issued(
    srv: ServerUnderTest, stub: devices_pb2_grpc.DeviceServiceStub
) -> None:
    session = login(srv)
    add_device(stub, session, "door")
    created = new_token(stub, session, resources=["open"])
    srv.clock.advance(hours=1)
    listing = stub.ListDeviceTokens(
        devices_pb2.ListDeviceTokensRequest(user_id=USERNAME, device_id="door"),
        metadata=bearer(session),
    )
    assert json_format.MessageToDict(listing) == [
        {"id": created.id, "name": "Door", "token": created.token}
    ]


def test_a_device_token_is_the_contracts_principal(
    srv: ServerUnderTest, stub: devices_pb2_grpc.DeviceServiceStub
) -> None:
    session = login(srv)
    add_device(stub, session, "door")
    scoped = new_token(stub, session, resources=["open"])
    principal = authenticate(srv, scoped.token, Access.ACCESS_USER_OR_DEVICE_TOKEN)
    ada = srv.database.call(lambda s: users.get_user_by_username(s, USERNAME))
    assert ada is not None
    assert principal == UserPrincipal(
        user_id=ada.id,
        username=USERNAME,
        permissions=(
            Permission("door", frozenset({"open"}), frozenset({Action.READ, Action.CALL})),
        ),
    )
    assert principal.credential == "device_token"
    assert principal.allows(Action.CALL, "door", "open")
    assert not principal.allows(Action.CALL, "door", "close")
    assert not principal.allows(Action.CALL, "other", "open")
    unscoped = authenticate(srv, new_token(stub, session).token, Access.ACCESS_USER_OR_DEVICE_TOKEN)
    assert unscoped.permissions[0].resources == frozenset()


def test_a_device_token_is_refused_on_user_rpcs(
    srv: ServerUnderTest, stub: devices_pb2_grpc.DeviceServiceStub
) -> None:
    session = login(srv)
    add_device(stub, session, "door")
    token = new_token(stub, session).token
    with pytest.raises(Unauthenticated):
        authenticate(srv, token, Access.ACCESS_USER)
    code, _ = code_of(
        stub.ListDevices, devices_pb2.ListDevicesRequest(user_id=USERNAME), metadata=bearer(token)
    )
    assert code == grpc.StatusCode.UNAUTHENTICATED
    code, _ = code_of(
        srv.auth.GetCurrentUser, auth_pb2.GetCurrentUserRequest(), metadata=bearer(token)
    )
    assert code == grpc.StatusCode.UNAUTHENTICATED


def test_a_device_token_dies_with_its_row_its_device_and_its_expiry(
    srv: ServerUnderTest, stub: devices_pb2_grpc.DeviceServiceStub
) -> None:
    session = login(srv)
    add_device(stub, session, "door")
    deleted = new_token(stub, session)
    expiring = new_token(
        stub, session, expiration_ms=int((srv.clock.now + timedelta(minutes=5)).timestamp() * 1000)
    )
    either = Access.ACCESS_USER_OR_DEVICE_TOKEN
    assert authenticate(srv, expiring.token, either)
    stub.DeleteDeviceToken(
        devices_pb2.DeleteDeviceTokenRequest(
            user_id=USERNAME, device_id="door", token_id=deleted.id
        ),
        metadata=bearer(session),
    )
    with pytest.raises(Unauthenticated):
        authenticate(srv, deleted.token, either)
    srv.clock.advance(minutes=5)
    with pytest.raises(Unauthenticated):
        authenticate(srv, expiring.token, either)
    survivor = new_token(stub, session)
    stub.DeleteDevice(
        devices_pb2.DeleteDeviceRequest(user_id=USERNAME, device_id="door"),
        metadata=bearer(session),
    )
    with pytest.raises(Unauthenticated):
        authenticate(srv, survivor.token, either)


def test_a_token_with_altered_claims_is_refused_even_when_signed(
    srv: ServerUnderTest, stub: devices_pb2_grpc.DeviceServiceStub
) -> None:
    """Signed with the server's own key, but not the token the row describes."""
    session = login(srv)
    add_device(stub, session, "door")
    scoped = new_token(stub, session, resources=["open"])
    claims = jwt.decode(scoped.token, options={"verify_signature": False})
    del claims["res"]  # widened to every resource
    key = srv.keys.ring().current
    forged = jwt.encode(claims, key.secret, "HS256", headers={"kid": key.kid})
    with pytest.raises(Unauthenticated):
        authenticate(srv, forged, Access.ACCESS_USER_OR_DEVICE_TOKEN)


def listed_token(srv: ServerUnderTest, stub: devices_pb2_grpc.DeviceServiceStub) -> str:
    listing = stub.ListDeviceTokens(
        devices_pb2.ListDeviceTokensRequest(user_id=USERNAME, device_id="door"),
        metadata=bearer(login(srv)),
    )
    return str(json_format.MessageToDict(listing)[0]["token"])


def test_in_a_rotations_grace_the_list_shows_the_same_token(
    srv: ServerUnderTest, stub: devices_pb2_grpc.DeviceServiceStub
) -> None:
    session = login(srv)
    add_device(stub, session, "door")
    created = new_token(stub, session)
    srv.keys.rotate(srv.clock.now, grace=timedelta(minutes=30))
    assert listed_token(srv, stub) == created.token
    assert authenticate(srv, created.token, Access.ACCESS_USER_OR_DEVICE_TOKEN)


def test_past_a_rotations_grace_the_list_shows_the_token_that_works(
    srv: ServerUnderTest, stub: devices_pb2_grpc.DeviceServiceStub
) -> None:
    session = login(srv)
    add_device(stub, session, "door")
    created = new_token(stub, session)
    either = Access.ACCESS_USER_OR_DEVICE_TOKEN
    # Rotated an hour ago with half an hour of grace: the token's key verifies no more.
    srv.keys.rotate(srv.clock.now - timedelta(hours=1), grace=timedelta(minutes=30))
    with pytest.raises(Unauthenticated):
        authenticate(srv, created.token, either)
    moved = listed_token(srv, stub)
    assert moved != created.token
    assert jwt.get_unverified_header(moved)["kid"] == srv.keys.ring().current.kid
    assert jwt.decode(moved, options={"verify_signature": False}) == jwt.decode(
        created.token, options={"verify_signature": False}
    )
    assert authenticate(srv, moved, either)
    assert listed_token(srv, stub) == moved
    # The row now names the key that signed it: the next rotation's grace keeps it as it is.
    srv.keys.rotate(srv.clock.now, grace=timedelta(minutes=30))
    assert listed_token(srv, stub) == moved
    assert authenticate(srv, moved, either)


def test_another_user_gets_401_whether_or_not_the_device_exists(
    srv: ServerUnderTest, stub: devices_pb2_grpc.DeviceServiceStub
) -> None:
    add_device(stub, login(srv), "door")
    bob = login(srv, "bob@example.com", "bob's password")
    for device in ("door", "nothing"):
        for call, request in [
            (stub.DeleteDevice, devices_pb2.DeleteDeviceRequest(user_id="ada", device_id=device)),
            (
                stub.ListDeviceTokens,
                devices_pb2.ListDeviceTokensRequest(user_id="ada", device_id=device),
            ),
        ]:
            assert code_of(call, request, metadata=bearer(bob)) == (
                grpc.StatusCode.UNAUTHENTICATED,
                "not authorized for user 'ada'",
            )
    code, _ = code_of(
        stub.ListDevices, devices_pb2.ListDevicesRequest(user_id="nobody"), metadata=bearer(bob)
    )
    assert code == grpc.StatusCode.UNAUTHENTICATED


def test_a_scoped_user_token_lists_only_its_devices_and_manages_nothing(
    srv: ServerUnderTest, stub: devices_pb2_grpc.DeviceServiceStub
) -> None:
    session = login(srv)
    add_device(stub, session, "door")
    add_device(stub, session, "safe")
    grants = json_format.ParseDict([{"device": "door"}], struct_pb2.Value())
    user_token = srv.auth.CreateAccessToken(
        auth_pb2.CreateAccessTokenRequest(
            user_id=USERNAME, token_name="t", token_permissions=grants
        ),
        metadata=bearer(session),
    ).token

    def listed(device_id: str = "") -> list:
        answer = stub.ListDevices(
            devices_pb2.ListDevicesRequest(user_id=USERNAME, id=device_id),
            metadata=bearer(user_token),
        )
        return [entry["device"] for entry in json_format.MessageToDict(answer)]

    assert listed() == ["door"]
    # The hidden device answers like one that does not exist.
    assert listed("safe") == listed("nothing") == []
    code, _ = code_of(
        stub.DeleteDevice,
        devices_pb2.DeleteDeviceRequest(user_id=USERNAME, device_id="door"),
        metadata=bearer(user_token),
    )
    assert code == grpc.StatusCode.UNAUTHENTICATED
    code, _ = code_of(new_token, stub, user_token)
    assert code == grpc.StatusCode.UNAUTHENTICATED
