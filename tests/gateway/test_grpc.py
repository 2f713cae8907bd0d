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


def test_grpc_content_type_over_http1_is_not_reshaped(client: httpx.Client) -> None:
    """A (broken) gRPC request keeps its gRPC answer: the Lua filter stays out of gRPC."""
    response = client.post(
        "/thingwire.auth.v1.AuthService/Login",
        content=b"",
        headers={"content-type": "application/grpc"},
    )
    assert response.headers["content-type"].startswith("application/grpc")
    assert response.content == b""


def test_upstream_down_is_unavailable(down_gateway: RunningGateway) -> None:
    with grpc.insecure_channel(down_gateway.grpc_target) as channel:
        stub = auth_pb2_grpc.AuthServiceStub(channel)
        with pytest.raises(grpc.RpcError) as caught:
            stub.Login(auth_pb2.LoginRequest(email="a@b.c", password=PASSWORD), timeout=5)
    assert caught.value.code() is grpc.StatusCode.UNAVAILABLE
