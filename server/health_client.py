"""A synchronous health probe for `thingwire status`: is the stack answering gRPC?

It goes through the gateway by default, so a SERVING answer means Envoy and the server
both work. The channel is injected, so tests drive it with grpcio-testing.
"""

from __future__ import annotations

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from server.errors import Unavailable

HEALTH_TIMEOUT_SECONDS = 5.0


def check_health(
    channel: grpc.Channel, service: str = "", timeout: float = HEALTH_TIMEOUT_SECONDS
) -> str:
    """The serving status name ("SERVING", "NOT_SERVING", …) of `service` ("" = the server)."""
    stub = health_pb2_grpc.HealthStub(channel)
    try:
        answer = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout)
    except grpc.RpcError as error:
        raise Unavailable(f"health check failed: {error.code().name}: {error.details()}") from None
    return health_pb2.HealthCheckResponse.ServingStatus.Name(answer.status)
