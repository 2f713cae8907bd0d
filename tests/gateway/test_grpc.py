"""Native gRPC through the gateway's port: calls, errors, metadata, health and reflection."""

from __future__ import annotations

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from thingwire.auth.v1 import auth_pb2, auth_pb2_grpc

from tests.gateway.conftest import RunningGateway
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


def test_error_after_metadata_keeps_code_and_metadata(channel: grpc.Channel) -> None:
    stub = auth_pb2_grpc.AuthServiceStub(channel)
    with pytest.raises(grpc.RpcError) as caught:
        stub.Login(auth_pb2.LoginRequest(email=THROTTLED_EMAIL, password="x"), timeout=5)
    assert caught.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert caught.value.details() == "too many failed logins"
    assert ("x-retry-after", "30") in [(m.key, m.value) for m in caught.value.initial_metadata()]


def test_initial_metadata_passes_untouched(channel: grpc.Channel) -> None:
    stub = auth_pb2_grpc.AuthServiceStub(channel)
    _, call = stub.CreateApiToken.with_call(auth_pb2.CreateApiTokenRequest(name="n"), timeout=5)
    assert ("x-http-status", "201") in [(m.key, m.value) for m in call.initial_metadata()]


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
