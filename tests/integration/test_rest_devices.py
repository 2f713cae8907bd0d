"""Thinger's Devices API v1 and device tokens, sent as curl would, through the real Envoy.

One stack per module and database kind, started with a small device limit.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import grpc
import httpx
import jwt
import pytest
import sqlalchemy as sa
from google.protobuf import json_format
from thingwire.devices.v1 import devices_pb2, devices_pb2_grpc

from server.storage.db import Database
from server.storage.models import Device
from tests.integration.conftest import PASSWORD
from tests.integration.stack import Stack, stack_fixture

pytestmark = pytest.mark.integration

LIMIT = 4
JSON = {"Content-Type": "application/json;charset=UTF-8"}


#: Accounts may have at most `LIMIT` devices here.
stack = stack_fixture(THINGWIRE_MAX_DEVICES_PER_USER=str(LIMIT))


@pytest.fixture(scope="module")
def client(stack: Stack) -> Iterator[httpx.Client]:
    with stack.http() as http:
        yield http


@pytest.fixture(scope="module")
def database(stack: Stack) -> Iterator[Database]:
    db = Database(stack.db_url)
    try:
        yield db
    finally:
        db.dispose()


def session_of(stack: Stack, username: str) -> dict[str, str]:
    """The Authorization header of a Thinger login (OAuth password grant)."""
    return {"Authorization": f"Bearer {stack.thinger_token(username)}"}


@pytest.fixture(scope="module")
def auth(stack: Stack, ada: dict) -> dict[str, str]:
    return session_of(stack, "ada")


@pytest.fixture(scope="module")
def bob_auth(stack: Stack, bob: dict) -> dict[str, str]:
    return session_of(stack, "bob")


@pytest.fixture(scope="module")
def nodemcu(client: httpx.Client, auth: dict[str, str]) -> str:
    """The seed's example device, added as documented."""
    answer = client.post(
        "/v1/users/ada/devices",
        json={
            "device_id": "nodemcu",
            "device_description": "NodeMCU With ESP8266",
            "device_credentials": "BN8RbpRKfxhm",
        },
        headers={**auth, **JSON},
    )
    assert answer.status_code == 200, answer.text
    return "nodemcu"


def add(
    client: httpx.Client, auth: dict[str, str], device: str, user: str = "ada"
) -> httpx.Response:
    body = {"device_id": device, "device_description": "", "device_credentials": "c"}
    return client.post(f"/v1/users/{user}/devices", json=body, headers=auth)


def error_of(answer: httpx.Response) -> str:
    """The message of a Thinger error body (and nothing else in it)."""
    body = answer.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"message"}
    return str(body["error"]["message"])


# --- List, add, delete devices -------------------------------------------------------------


@pytest.mark.parametrize("path", ["/v1/users/ada/devices", "/v1/users/ada/devices/"])
def test_list_devices_as_documented(
    client: httpx.Client, auth: dict[str, str], nodemcu: str, path: str
) -> None:
    answer = client.get(path, headers=auth)
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("application/json")
    assert answer.json() == [
        {
            "device": "nodemcu",
            "description": "NodeMCU With ESP8266",
            "connection": {"active": False, "ts": 0},
        }
    ]


def test_list_devices_shows_the_connection_state(
    client: httpx.Client, auth: dict[str, str], nodemcu: str, database: Database
) -> None:
    when = datetime(2017, 2, 2, 14, 59, 13, 711000, tzinfo=UTC)
    with database.session() as s:
        s.execute(
            sa.update(Device)
            .where(Device.device_id == "nodemcu")
            .values(connected=True, connected_time=when)
        )
    try:
        answer = client.get("/v1/users/ada/devices", headers=auth)
        assert answer.json()[0]["connection"] == {"active": True, "ts": 1486047553711}
    finally:
        with database.session() as s:
            s.execute(sa.update(Device).values(connected=False, connected_time=None))


def test_list_devices_by_id(client: httpx.Client, auth: dict[str, str], nodemcu: str) -> None:
    found = client.get("/v1/users/ada/devices", params={"id": "nodemcu"}, headers=auth)
    assert [d["device"] for d in found.json()] == ["nodemcu"]
    missing = client.get("/v1/users/ada/devices/", params={"id": "ghost"}, headers=auth)
    assert (missing.status_code, missing.json()) == (200, [])


@pytest.mark.parametrize("bad", ["bad-id", "a" * 26, "../bob", "x y", "nodemcu\x00"])
def test_list_devices_with_a_bad_id_is_400(
    client: httpx.Client, auth: dict[str, str], bad: str
) -> None:
    answer = client.get("/v1/users/ada/devices", params={"id": bad}, headers=auth)
    assert answer.status_code == 400
    assert "invalid device id" in error_of(answer)


@pytest.mark.parametrize("path", ["/v1/users/ada/devices", "/v1/users/ada/devices/"])
def test_add_and_delete_a_device(client: httpx.Client, auth: dict[str, str], path: str) -> None:
    answer = client.post(
        path,
        json={"device_id": "temp_1", "device_description": "t", "device_credentials": "c"},
        headers=auth,
    )
    assert answer.status_code == 200, answer.text
    assert answer.json() == {}
    listed = client.get("/v1/users/ada/devices", params={"id": "temp_1"}, headers=auth).json()
    assert [d["device"] for d in listed] == ["temp_1"]
    removed = client.delete(
        f"{path.rstrip('/')}/temp_1{path[-1:] if path.endswith('/') else ''}", headers=auth
    )
    assert removed.status_code == 200
    assert removed.json() == {}
    assert client.get("/v1/users/ada/devices", params={"id": "temp_1"}, headers=auth).json() == []


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"device_description": "x", "device_credentials": "c"}, "device_id is required"),
        ({"device_id": "d1", "device_description": "x"}, "device_credentials is required"),
        ({}, "device_id is required"),
        (
            {"device_id": "bad-id", "device_credentials": "c"},
            "invalid device id 'bad-id': use 1 to 25 letters, digits or underscores",
        ),
        (
            {"device_id": "a" * 26, "device_credentials": "c"},
            f"invalid device id '{'a' * 26}': use 1 to 25 letters, digits or underscores",
        ),
        (
            {"device_id": "../../etc", "device_credentials": "c"},
            "invalid device id '../../etc': use 1 to 25 letters, digits or underscores",
        ),
        (
            {"device_id": "nodemcu", "device_credentials": "c"},
            "device 'nodemcu' already exists",
        ),
    ],
)
def test_add_device_failures_are_400(
    client: httpx.Client, auth: dict[str, str], nodemcu: str, body: dict, message: str
) -> None:
    answer = client.post("/v1/users/ada/devices", json=body, headers=auth)
    assert answer.status_code == 400
    assert error_of(answer) == message


@pytest.mark.parametrize(
    "raw",
    [
        b"{not json",
        b"[1, 2]",
        b'{"device_id": 5, "device_credentials": "c"}',
        b'{"device_id": ["a"], "device_credentials": "c"}',
        b'"nodemcu"',
    ],
)
def test_add_device_with_a_malformed_body_is_400(
    client: httpx.Client, auth: dict[str, str], raw: bytes
) -> None:
    answer = client.post("/v1/users/ada/devices", content=raw, headers={**auth, **JSON})
    assert answer.status_code == 400
    assert error_of(answer)


def test_add_device_with_a_huge_body_is_413(client: httpx.Client, auth: dict[str, str]) -> None:
    huge = b'{"device_id": "big", "device_description": "' + b"a" * (9 * 1024 * 1024) + b'"}'
    answer = client.post("/v1/users/ada/devices", content=huge, headers={**auth, **JSON})
    assert answer.status_code == 413
    assert error_of(answer)


def test_a_description_over_the_limit_is_400(client: httpx.Client, auth: dict[str, str]) -> None:
    body = {"device_id": "wordy", "device_description": "a" * 2000, "device_credentials": "c"}
    answer = client.post("/v1/users/ada/devices", json=body, headers=auth)
    assert answer.status_code == 400
    assert "description" in error_of(answer)


def test_delete_an_unknown_device_is_404(client: httpx.Client, auth: dict[str, str]) -> None:
    answer = client.delete("/v1/users/ada/devices/ghost", headers=auth)
    assert answer.status_code == 404
    assert error_of(answer) == "device 'ghost' not found"


def test_delete_a_connected_device_is_400(
    client: httpx.Client, auth: dict[str, str], database: Database
) -> None:
    assert add(client, auth, "busy").status_code == 200
    with database.session() as s:
        s.execute(sa.update(Device).where(Device.device_id == "busy").values(connected=True))
    answer = client.delete("/v1/users/ada/devices/busy", headers=auth)
    assert answer.status_code == 400
    assert "is connected" in error_of(answer)
    with database.session() as s:
        s.execute(sa.update(Device).where(Device.device_id == "busy").values(connected=False))
    assert client.delete("/v1/users/ada/devices/busy", headers=auth).status_code == 200


@pytest.mark.parametrize(
    "path",
    [
        "/v1/users/ada/devices/..%2Fbob",
        "/v1/users/ada/devices/%2e%2e",
        "/v1/users/ada/devices/nodemcu%00",
        "/v1/users/ada/devices/nodemcu%2F..%2F..%2Fbob",
        "/v1/users/ada/devices/%2e%2e%2f%2e%2e%2fbob%2fdevices%2fnodemcu",
    ],
)
def test_path_traversal_in_a_device_id_deletes_nothing(
    client: httpx.Client, auth: dict[str, str], nodemcu: str, path: str
) -> None:
    answer = client.delete(path, headers=auth)
    assert answer.status_code in (400, 404), answer.text
    assert error_of(answer)
    assert client.get("/v1/users/ada/devices", params={"id": "nodemcu"}, headers=auth).json()


# --- The account's device limit ---------------------------------------------------------


def test_the_device_limit_is_a_400(client: httpx.Client, stack: Stack) -> None:
    stack.cli_json(
        "user", "create", "--email", "dan@example.com", "--password", PASSWORD, "--username", "dan"
    )
    dan = session_of(stack, "dan")
    for i in range(LIMIT):
        assert add(client, dan, f"d{i}", "dan").status_code == 200
    answer = add(client, dan, "one_more", "dan")
    assert answer.status_code == 400
    assert error_of(answer) == f"the account has reached its limit of {LIMIT} devices"
    assert client.delete("/v1/users/dan/devices/d0", headers=dan).status_code == 200
    assert add(client, dan, "one_more", "dan").status_code == 200


def test_concurrent_adds_at_the_limit_admit_one(client: httpx.Client, stack: Stack) -> None:
    stack.cli_json(
        "user", "create", "--email", "eve@example.com", "--password", PASSWORD, "--username", "eve"
    )
    eve = session_of(stack, "eve")
    for i in range(LIMIT - 1):
        assert add(client, eve, f"d{i}", "eve").status_code == 200
    statuses: list[int] = []
    barrier = threading.Barrier(6)

    def contend(i: int) -> None:
        with stack.http() as http:
            barrier.wait()
            statuses.append(add(http, eve, f"racer{i}", "eve").status_code)

    threads = [threading.Thread(target=contend, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(statuses) == [200] + [400] * 5
    assert len(client.get("/v1/users/eve/devices", headers=eve).json()) == LIMIT


# --- Device tokens ----------------------------------------------------------------------


@pytest.mark.parametrize("slash", ["", "/"])
def test_device_token_lifecycle(
    client: httpx.Client, auth: dict[str, str], nodemcu: str, slash: str
) -> None:
    tokens = f"/v1/users/ada/devices/nodemcu/tokens{slash}"
    expiration = int((datetime.now(UTC) + timedelta(days=30)).timestamp()) * 1000
    created = client.post(
        tokens,
        json={
            "token_name": "DoorAccess",
            "token_resources": ["open", "close"],
            "token_expiration": expiration,
        },
        headers={**auth, **JSON},
    )
    assert created.status_code == 200, created.text
    body = created.json()
    assert set(body) == {"id", "name", "token"}
    assert body["name"] == "DoorAccess"
    assert len(body["id"]) == 24
    claims = jwt.decode(body["token"], options={"verify_signature": False})
    assert claims == {
        "dev": "nodemcu",
        "exp": expiration // 1000,
        "iat": claims["iat"],
        "jti": body["id"],
        "res": ["open", "close"],
        "usr": "ada",
    }
    listed = client.get(tokens, headers=auth)
    assert listed.status_code == 200
    assert body in listed.json()
    removed = client.delete(
        f"/v1/users/ada/devices/nodemcu/tokens/{body['id']}{slash}", headers=auth
    )
    assert removed.status_code == 200
    assert body not in client.get(tokens, headers=auth).json()
    again = client.delete(f"/v1/users/ada/devices/nodemcu/tokens/{body['id']}", headers=auth)
    assert again.status_code == 404
    assert error_of(again) == f"token {body['id']!r} not found"


def test_a_token_with_only_a_name_has_only_the_seed_claims(
    client: httpx.Client, auth: dict[str, str], nodemcu: str
) -> None:
    created = client.post(
        "/v1/users/ada/devices/nodemcu/tokens", json={"token_name": "Plain"}, headers=auth
    )
    assert created.status_code == 200
    claims = jwt.decode(created.json()["token"], options={"verify_signature": False})
    assert set(claims) == {"dev", "iat", "jti", "usr"}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({}, "name is required"),
        ({"token_name": ""}, "name is required"),
        (
            {"token_name": "t", "token_expiration": 1487894400000},
            "token_expiration must be in the future",
        ),
        ({"token_name": "t", "token_expiration": -1}, "token_expiration must be in the future"),
        (
            {"token_name": "t", "token_resources": []},
            "token_resources must name at least one resource; leave it out for every resource",
        ),
        (
            {"token_name": "t", "token_resources": None},
            "token_resources must be a list of resource names",
        ),
        (
            {"token_name": "t", "token_resources": "open"},
            "token_resources must be a list of resource names",
        ),
        (
            {"token_name": "t", "token_resources": [1, 2]},
            "token_resources must be a list of resource names",
        ),
        (
            {"token_name": "t", "token_resources": {"a": 1}},
            "token_resources must be a list of resource names",
        ),
    ],
)
def test_device_token_failures_are_400(
    client: httpx.Client, auth: dict[str, str], nodemcu: str, body: dict, message: str
) -> None:
    answer = client.post("/v1/users/ada/devices/nodemcu/tokens", json=body, headers=auth)
    assert answer.status_code == 400
    assert error_of(answer) == message


@pytest.mark.parametrize(
    "raw", [b"{", b'{"token_name": 5}', b'{"token_name": "t", "token_expiration": "soon"}']
)
def test_device_token_malformed_bodies_are_400(
    client: httpx.Client, auth: dict[str, str], nodemcu: str, raw: bytes
) -> None:
    answer = client.post(
        "/v1/users/ada/devices/nodemcu/tokens", content=raw, headers={**auth, **JSON}
    )
    assert answer.status_code == 400
    assert error_of(answer)


@pytest.mark.parametrize("token_id", ["ghost", "0" * 24, "%00", "..%2F..", "A" * 24])
def test_deleting_an_unknown_token_is_404(
    client: httpx.Client, auth: dict[str, str], nodemcu: str, token_id: str
) -> None:
    answer = client.delete(f"/v1/users/ada/devices/nodemcu/tokens/{token_id}", headers=auth)
    assert answer.status_code == 404
    assert error_of(answer).startswith("token ")


def test_tokens_of_an_unknown_device_are_404(client: httpx.Client, auth: dict[str, str]) -> None:
    for answer in (
        client.get("/v1/users/ada/devices/ghost/tokens", headers=auth),
        client.post("/v1/users/ada/devices/ghost/tokens", json={"token_name": "t"}, headers=auth),
        client.delete("/v1/users/ada/devices/ghost/tokens/" + "0" * 24, headers=auth),
    ):
        assert answer.status_code == 404
        assert error_of(answer) == "device 'ghost' not found"


def test_a_device_token_manages_nothing(
    client: httpx.Client, auth: dict[str, str], nodemcu: str
) -> None:
    token = client.post(
        "/v1/users/ada/devices/nodemcu/tokens", json={"token_name": "t"}, headers=auth
    ).json()["token"]
    as_header = {"Authorization": f"Bearer {token}"}
    for answer in (
        client.get("/v1/users/ada/devices", headers=as_header),
        client.get("/v1/users/ada/devices", params={"authorization": token}),
        client.post(
            "/v1/users/ada/devices/nodemcu/tokens", json={"token_name": "x"}, headers=as_header
        ),
        client.get("/v1/users/ada/devices/nodemcu/tokens", params={"authorization": token}),
        client.delete("/v1/users/ada/devices/nodemcu", headers=as_header),
        client.get("/v1/users/ada/tokens", headers=as_header),
        client.get("/auth/user/", headers=as_header),
    ):
        assert answer.status_code == 401, answer.request.url
    assert client.get("/v1/users/ada/devices", params={"id": "nodemcu"}, headers=auth).json()


def test_the_session_works_as_a_query_parameter(
    client: httpx.Client, auth: dict[str, str], nodemcu: str
) -> None:
    token = auth["Authorization"].removeprefix("Bearer ")
    answer = client.get("/v1/users/ada/devices/nodemcu/tokens", params={"authorization": token})
    assert answer.status_code == 200


@pytest.mark.parametrize(
    "header",
    [
        None,
        "Bearer junk",
        "Bearer "
        + jwt.encode({"dev": "nodemcu", "iat": 1, "jti": "0" * 24, "usr": "ada"}, "k" * 32),
    ],
)
def test_bad_or_forged_tokens_are_401(
    client: httpx.Client, nodemcu: str, header: str | None
) -> None:
    headers = {} if header is None else {"Authorization": header}
    answer = client.get("/v1/users/ada/devices", headers=headers)
    assert answer.status_code == 401
    assert error_of(answer)


def test_an_expired_session_is_401(client: httpx.Client, stack: Stack, ada: dict) -> None:
    from server.security.jwt_tokens import TokenSigner
    from server.security.keys import KeyFile

    signer = TokenSigner(KeyFile(stack.workdir / "var" / "jwt-keys.json"))
    stale = signer.access_token("ada", datetime.now(UTC) - timedelta(hours=3))
    answer = client.get("/v1/users/ada/devices", headers={"Authorization": f"Bearer {stale}"})
    assert answer.status_code == 401


# --- Users isolated ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/users/ada/devices"),
        ("GET", "/v1/users/ada/devices?id=nodemcu"),
        ("POST", "/v1/users/ada/devices"),
        ("DELETE", "/v1/users/ada/devices/nodemcu"),
        ("DELETE", "/v1/users/ada/devices/ghost"),
        ("GET", "/v1/users/ada/devices/nodemcu/tokens"),
        ("GET", "/v1/users/ada/devices/ghost/tokens"),
        ("POST", "/v1/users/ada/devices/nodemcu/tokens"),
        ("DELETE", "/v1/users/ada/devices/nodemcu/tokens/" + "0" * 24),
        ("GET", "/v1/users/nobody/devices"),
        ("DELETE", "/v1/users/nobody/devices/nodemcu"),
    ],
)
def test_another_users_paths_are_401_whether_or_not_they_exist(
    client: httpx.Client, bob_auth: dict[str, str], nodemcu: str, method: str, path: str
) -> None:
    body = {"device_id": "intruder", "device_credentials": "c", "token_name": "t"}
    answer = client.request(method, path, headers=bob_auth, json=body if method == "POST" else None)
    assert answer.status_code == 401
    user = path.split("/")[3]
    assert error_of(answer) == f"not authorized for user {user!r}"


def test_bobs_devices_are_his_own(
    client: httpx.Client, auth: dict[str, str], bob_auth: dict[str, str], nodemcu: str
) -> None:
    """The same device id for two users: each sees, and deletes, only their own."""
    assert add(client, bob_auth, "nodemcu", "bob").status_code == 200
    assert [d["device"] for d in client.get("/v1/users/bob/devices", headers=bob_auth).json()] == [
        "nodemcu"
    ]
    assert client.delete("/v1/users/bob/devices/nodemcu", headers=bob_auth).status_code == 200
    assert client.get("/v1/users/ada/devices", params={"id": "nodemcu"}, headers=auth).json()


# --- The gRPC face ----------------------------------------------------------------------


def test_the_same_api_over_grpc_with_generated_stubs(
    stack: Stack, auth: dict[str, str], nodemcu: str
) -> None:
    metadata = (("authorization", auth["Authorization"]),)
    with grpc.insecure_channel(stack.grpc_target) as channel:
        stub = devices_pb2_grpc.DeviceServiceStub(channel)
        listing = stub.ListDevices(
            devices_pb2.ListDevicesRequest(user_id="ada", id="nodemcu"), metadata=metadata
        )
        assert json_format.MessageToDict(listing)[0]["device"] == "nodemcu"
        created = stub.CreateDeviceToken(
            devices_pb2.CreateDeviceTokenRequest(
                user_id="ada", device_id="nodemcu", token_name="grpc"
            ),
            metadata=metadata,
        )
        assert jwt.decode(created.token, options={"verify_signature": False})["dev"] == "nodemcu"
        with pytest.raises(grpc.RpcError) as info:
            stub.DeleteDevice(
                devices_pb2.DeleteDeviceRequest(user_id="ada", device_id="ghost"),
                metadata=metadata,
            )
        assert info.value.code() == grpc.StatusCode.NOT_FOUND
