"""Native gRPC through the gateway's port: calls, errors, metadata, health and reflection."""

from __future__ import annotations

import json

import grpc
import httpx
import pytest
from google.protobuf import struct_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from thingwire.auth.v1 import auth_pb2, auth_pb2_grpc

from gateway.config import GRPC_OVER_HTTP1_MESSAGE, PROTOCOL_HEADER
from server.rest_errors import ERROR_BODY_KEY, HTTP_STATUS_KEY
from tests.gateway.conftest import RunningGateway
from tests.gateway.demo_service import DEMO_SERVICE
from tests.gateway.fake_upstream import BAD_LOGIN, PASSWORD, SLOW_TOKEN_ID, THROTTLED_EMAIL

pytestmark = pytest.mark.integration


def test_unary_call(channel: grpc.Channel) -> None:
    stub = auth_pb2_grpc.AuthServiceStub(channel)
    answer = stub.Login(auth_pb2.LoginRequest(email="a@b.c", password=PASSWORD), timeout=5)
    assert answer.token == "tok-a@b.c"


def test_error_keeps_code_and_details(channel: grpc.Channel) -> None:
    stub = auth_pb2_grpc.AuthServiceStub(channel)
    with pytest.raises(grpc.RpcError) as caught:
        stub.Login(auth_pb2.LoginRequest(email="a@b.c", password="wrong"), timeout=5)
    assert caught.value.code() is grpc.StatusCode.UNAUTHENTICATED
    assert caught.value.details() == BAD_LOGIN


def test_error_keeps_code_and_trailing_metadata(channel: grpc.Channel) -> None:
    stub = auth_pb2_grpc.AuthServiceStub(channel)
    with pytest.raises(grpc.RpcError) as caught:
        stub.Login(auth_pb2.LoginRequest(email=THROTTLED_EMAIL, password="x"), timeout=5)
    error = caught.value
    assert error.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert error.details() == "too many failed logins"
    trailing = {m.key: m.value for m in error.trailing_metadata()}
    assert trailing["retry-after"] == "30"
    # The REST body rides along for the gateway; a gRPC client may ignore it.
    assert json.loads(trailing[ERROR_BODY_KEY]) == {"detail": "too many failed logins"}


def test_initial_metadata_passes_untouched(channel: grpc.Channel) -> None:
    create = channel.unary_unary(
        f"/{DEMO_SERVICE.full_name}/CreateThing",
        request_serializer=struct_pb2.Struct.SerializeToString,
        response_deserializer=struct_pb2.Struct.FromString,
    )
    _, call = create.with_call(struct_pb2.Struct(), timeout=5)
    assert (HTTP_STATUS_KEY, "201") in [(m.key, m.value) for m in call.initial_metadata()]


def test_client_deadline_is_honoured(channel: grpc.Channel) -> None:
    stub = auth_pb2_grpc.AuthServiceStub(channel)
    with pytest.raises(grpc.RpcError) as caught:
        stub.DeleteApiToken(auth_pb2.DeleteApiTokenRequest(id=SLOW_TOKEN_ID), timeout=0.5)
    assert caught.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED


def test_health_check(channel: grpc.Channel) -> None:
    stub = health_pb2_grpc.HealthStub(channel)
    answer = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
    assert answer.status == health_pb2.HealthCheckResponse.SERVING


def test_reflection_lists_services(channel: grpc.Channel) -> None:
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    request = reflection_pb2.ServerReflectionRequest(list_services="")
    answers = list(stub.ServerReflectionInfo(iter([request]), timeout=5))
    names = {service.name for service in answers[0].list_services_response.service}
    assert {"thingwire.auth.v1.AuthService", "grpc.health.v1.Health"} <= names


#: A REST path, a gRPC method's path, an unknown path, and each family's prefixes.
HTTP1_GRPC_CASES = [
    ("/auth/user/", {"detail": GRPC_OVER_HTTP1_MESSAGE}),
    ("/thingwire.auth.v1.AuthService/GetCurrentUser", {"detail": GRPC_OVER_HTTP1_MESSAGE}),
    ("/thingwire.auth.v1.AuthService/Login", {"detail": GRPC_OVER_HTTP1_MESSAGE}),
    ("/no/such/path", {"detail": GRPC_OVER_HTTP1_MESSAGE}),
    ("/v1/users/ada/tokens", {"error": {"message": GRPC_OVER_HTTP1_MESSAGE}}),
    ("/oauth/token", {"error": {"message": GRPC_OVER_HTTP1_MESSAGE}}),
    (
        "/api/external/v1/inputs",
        {
            "errors": [
                {
                    "status": "415",
                    "title": "Unsupported Media Type",
                    "detail": GRPC_OVER_HTTP1_MESSAGE,
                }
            ]
        },
    ),
]


@pytest.mark.parametrize("content_type", ["application/grpc", "application/grpc+proto"])
@pytest.mark.parametrize("authorization", [None, "Bearer tok-a@b.c"])
@pytest.mark.parametrize(("path", "body"), HTTP1_GRPC_CASES)
def test_grpc_content_type_over_http1_is_a_json_415(
    client: httpx.Client, path: str, body: dict, content_type: str, authorization: str | None
) -> None:
    """HTTP/1 cannot carry gRPC: a REST client gets a 415 in its family's shape, never a
    200 with grpc-status and grpc-message."""
    headers = {"content-type": content_type}
    if authorization is not None:
        headers["authorization"] = authorization
    response = client.post(path, content=b"\x00\x00\x00\x00\x00", headers=headers)
    assert response.status_code == 415
    assert response.headers["content-type"] == "application/json"
    assert not [name for name in response.headers if name.lower().startswith("grpc-")]
    assert response.json() == body


def test_a_forged_protocol_header_does_not_reach_the_grpc_route(client: httpx.Client) -> None:
    response = client.post(
        "/thingwire.auth.v1.AuthService/Login",
        content=b"",
        headers={"content-type": "application/grpc", PROTOCOL_HEADER: "HTTP/2"},
    )
    assert response.status_code == 415
    assert "grpc-status" not in response.headers


@pytest.mark.parametrize("sent", [None, "HTTP/1.1"])
def test_the_protocol_marker_never_reaches_the_server(
    channel: grpc.Channel, client: httpx.Client, sent: str | None
) -> None:
    """Over h2c (the gRPC route) and over HTTP/1.1 (a REST route), sent or not."""
    metadata = () if sent is None else ((PROTOCOL_HEADER, sent),)
    user = auth_pb2_grpc.AuthServiceStub(channel).GetCurrentUser(
        auth_pb2.GetCurrentUserRequest(), metadata=metadata, timeout=5
    )
    assert user.email == ""
    headers = {} if sent is None else {PROTOCOL_HEADER: sent}
    assert client.get("/auth/user/", headers=headers).json()["email"] == ""


def test_grpc_content_type_over_http1_get_is_a_json_415(client: httpx.Client) -> None:
    response = client.get("/auth/user/", headers={"content-type": "application/grpc"})
    assert response.status_code == 415
    assert response.json() == {"detail": GRPC_OVER_HTTP1_MESSAGE}


def test_upstream_down_is_unavailable(down_gateway: RunningGateway) -> None:
    with grpc.insecure_channel(down_gateway.grpc_target) as channel:
        stub = auth_pb2_grpc.AuthServiceStub(channel)
        with pytest.raises(grpc.RpcError) as caught:
            stub.Login(auth_pb2.LoginRequest(email="a@b.c", password=PASSWORD), timeout=5)
    assert caught.value.code() is grpc.StatusCode.UNAVAILABLE
