"""Native gRPC on the gateway's port: generated stubs, health and reflection."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from thingwire.auth.v1 import auth_pb2, auth_pb2_grpc

from gateway.config import GRPC_OVER_HTTP1_MESSAGE
from tests.integration.conftest import PASSWORD
from tests.integration.stack import Stack

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def channel(stack: Stack) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(stack.grpc_target) as ch:
        yield ch


def test_login_with_the_generated_stub(channel: grpc.Channel, ada: dict) -> None:
    stub = auth_pb2_grpc.AuthServiceStub(channel)
    answer = stub.Login(
        auth_pb2.LoginRequest(email="ada@example.com", password=PASSWORD), timeout=10
    )
    assert answer.user.username == "ada"
    me = stub.GetCurrentUser(
        auth_pb2.GetCurrentUserRequest(),
        metadata=(("authorization", f"Bearer {answer.token}"),),
        timeout=10,
    )
    assert me.pk == ada["pk"]


def test_rest_token_works_over_grpc(channel: grpc.Channel, stack: Stack, ada: dict) -> None:
    with stack.http() as http:
        token = http.post(
            "/auth/login/", json={"email": "ada@example.com", "password": PASSWORD}
        ).json()["token"]
    me = auth_pb2_grpc.AuthServiceStub(channel).GetCurrentUser(
        auth_pb2.GetCurrentUserRequest(), metadata=(("authorization", f"Bearer {token}"),)
    )
    assert me.username == "ada"


def test_grpc_errors_keep_their_status(channel: grpc.Channel, ada: dict) -> None:
    stub = auth_pb2_grpc.AuthServiceStub(channel)
    with pytest.raises(grpc.RpcError) as info:
        stub.Login(auth_pb2.LoginRequest(email="ada@example.com", password="bad"), timeout=10)
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert info.value.details() == "invalid username or password"


def test_health_through_the_gateway(channel: grpc.Channel) -> None:
    stub = health_pb2_grpc.HealthStub(channel)
    for service in ("", "thingwire.auth.v1.AuthService"):
        answer = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
        assert answer.status == health_pb2.HealthCheckResponse.SERVING


def test_reflection_lists_the_services(channel: grpc.Channel) -> None:
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    request = reflection_pb2.ServerReflectionRequest(list_services="")
    answers = list(stub.ServerReflectionInfo(iter([request]), timeout=10))
    names = {s.name for s in answers[0].list_services_response.service}
    assert {"thingwire.auth.v1.AuthService", "thingwire.inputs.v1.InputService"} <= names
    assert "grpc.health.v1.Health" in names


def test_rest_and_grpc_share_one_port(stack: Stack) -> None:
    assert stack.grpc_target.endswith(f":{stack.http_port}")
    with httpx.Client(base_url=stack.base_url) as http:
        assert http.post("/auth/login/", json={}).status_code == 400


@pytest.mark.parametrize("content_type", ["application/grpc", "application/grpc+proto"])
@pytest.mark.parametrize("authorized", [False, True])
@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/auth/user/", {"detail": GRPC_OVER_HTTP1_MESSAGE}),
        ("/thingwire.auth.v1.AuthService/GetCurrentUser", {"detail": GRPC_OVER_HTTP1_MESSAGE}),
        ("/no/such/path", {"detail": GRPC_OVER_HTTP1_MESSAGE}),
        ("/v1/users/ada/devices", {"error": {"message": GRPC_OVER_HTTP1_MESSAGE}}),
    ],
)
def test_grpc_content_type_over_http1_is_a_json_415(
    stack: Stack, ada: dict, path: str, body: dict, content_type: str, authorized: bool
) -> None:
    """HTTP/1.1 cannot carry gRPC: the REST client is told so in its family's shape, with
    no grpc-* header and no 200, whether or not it is signed in."""
    headers = {"content-type": content_type}
    with stack.http() as http:
        if authorized:
            token = http.post(
                "/auth/login/", json={"email": "ada@example.com", "password": PASSWORD}
            ).json()["token"]
            headers["authorization"] = f"Bearer {token}"
        response = http.post(path, content=b"\x00\x00\x00\x00\x00", headers=headers)
    assert response.http_version == "HTTP/1.1"
    assert response.status_code == 415
    assert response.headers["content-type"] == "application/json"
    assert not [name for name in response.headers if name.lower().startswith("grpc-")]
    assert response.json() == body


def test_grpc_over_h2c_after_an_http1_refusal(stack: Stack, channel: grpc.Channel) -> None:
    """The refusal is per request: native gRPC on the same port keeps working."""
    with stack.http() as http:
        refused = http.post(
            "/grpc.health.v1.Health/Check", headers={"content-type": "application/grpc"}
        )
    assert refused.status_code == 415
    answer = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
    assert answer.status == health_pb2.HealthCheckResponse.SERVING
