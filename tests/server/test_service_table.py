"""The service table: what the server registers and the access levels cannot differ."""

from __future__ import annotations

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from thingwire.auth.v1 import auth_pb2

from server.app import OPEN_SERVICES, SERVICES
from server.interceptors import access_levels
from tests.server.conftest import ServerUnderTest


class AnyServicer:
    """Has every method a generated add function looks up."""

    def __getattr__(self, name: str) -> object:
        return lambda request, context: None


class RecordingServer:
    """Stands in for grpc.aio.Server and records the methods an add function registers."""

    def __init__(self) -> None:
        self.methods: set[str] = set()

    def add_generic_rpc_handlers(self, handlers: object) -> None:
        """The generic handler repeats what add_registered_method_handlers records."""

    def add_registered_method_handlers(self, service: str, handlers: dict[str, object]) -> None:
        self.methods.update(f"/{service}/{name}" for name in handlers)


def test_every_registered_method_has_a_level() -> None:
    recorder = RecordingServer()
    for service in SERVICES:
        service.add_to_server(AnyServicer(), recorder)
    levels = access_levels(service.descriptor for service in SERVICES)
    assert recorder.methods
    assert recorder.methods == set(levels)


def test_each_service_is_registered_by_its_own_add_function() -> None:
    for service in SERVICES:
        recorder = RecordingServer()
        service.add_to_server(AnyServicer(), recorder)
        expected = {f"/{service.descriptor.full_name}/{m.name}" for m in service.descriptor.methods}
        assert recorder.methods == expected


def test_health_needs_no_credentials(grpc_server: ServerUnderTest) -> None:
    stub = health_pb2_grpc.HealthStub(grpc_server.channel)
    for service in ["", *(s.descriptor.full_name for s in SERVICES)]:
        answer = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
        assert answer.status == health_pb2.HealthCheckResponse.SERVING


def test_health_watch_streams_without_credentials(grpc_server: ServerUnderTest) -> None:
    stub = health_pb2_grpc.HealthStub(grpc_server.channel)
    updates = stub.Watch(health_pb2.HealthCheckRequest(service=""), timeout=5)
    assert next(updates).status == health_pb2.HealthCheckResponse.SERVING
    updates.cancel()


def test_reflection_needs_no_credentials(grpc_server: ServerUnderTest) -> None:
    stub = reflection_pb2_grpc.ServerReflectionStub(grpc_server.channel)
    request = reflection_pb2.ServerReflectionRequest(list_services="")
    (answer,) = list(stub.ServerReflectionInfo(iter([request]), timeout=5))
    listed = {service.name for service in answer.list_services_response.service}
    assert listed == {*(s.descriptor.full_name for s in SERVICES), *OPEN_SERVICES}


def test_our_rpcs_still_need_credentials(grpc_server: ServerUnderTest) -> None:
    with pytest.raises(grpc.RpcError) as info:
        grpc_server.auth.GetCurrentUser(auth_pb2.GetCurrentUserRequest(), timeout=5)
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
