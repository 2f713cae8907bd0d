"""`thingwire status`'s probe, driven with grpcio-testing (it is synchronous code)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import grpc
import grpc_testing
import pytest
from grpc_health.v1 import health_pb2

from server.errors import Unavailable
from server.health_client import check_health

CHECK = health_pb2.DESCRIPTOR.services_by_name["Health"].methods_by_name["Check"]


def _call_in_thread(call: Callable[[], Any]) -> tuple[threading.Thread, dict[str, Any]]:
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["value"] = call()
        except Exception as error:  # handed back to the test thread
            outcome["error"] = error

    thread = threading.Thread(target=run)
    thread.start()
    return thread, outcome


@pytest.fixture
def channel() -> grpc_testing.Channel:
    return grpc_testing.channel(
        health_pb2.DESCRIPTOR.services_by_name.values(), grpc_testing.strict_real_time()
    )


def test_reports_the_serving_status(channel: grpc_testing.Channel) -> None:
    thread, outcome = _call_in_thread(
        lambda: check_health(channel, "thingwire.auth.v1.AuthService")
    )
    _metadata, request, rpc = channel.take_unary_unary(CHECK)
    assert request.service == "thingwire.auth.v1.AuthService"
    rpc.terminate(
        health_pb2.HealthCheckResponse(status=health_pb2.HealthCheckResponse.SERVING),
        (),
        grpc.StatusCode.OK,
        "",
    )
    thread.join(5)
    assert outcome == {"value": "SERVING"}


def test_not_serving_is_reported_not_hidden(channel: grpc_testing.Channel) -> None:
    thread, outcome = _call_in_thread(lambda: check_health(channel))
    _metadata, _request, rpc = channel.take_unary_unary(CHECK)
    rpc.terminate(
        health_pb2.HealthCheckResponse(status=health_pb2.HealthCheckResponse.NOT_SERVING),
        (),
        grpc.StatusCode.OK,
        "",
    )
    thread.join(5)
    assert outcome == {"value": "NOT_SERVING"}


def test_an_unreachable_server_is_unavailable(channel: grpc_testing.Channel) -> None:
    thread, outcome = _call_in_thread(lambda: check_health(channel))
    _metadata, _request, rpc = channel.take_unary_unary(CHECK)
    rpc.terminate(None, (), grpc.StatusCode.UNAVAILABLE, "connection refused")
    thread.join(5)
    assert isinstance(outcome["error"], Unavailable)
    assert "UNAVAILABLE" in outcome["error"].message
