"""A canned in-process `grpc.aio` server for the gateway tests: each rpc shows one behaviour.

It runs on its own event loop in a background thread, so the (synchronous) tests can talk
to it through the real Envoy with httpx and synchronous gRPC stubs. It fails the way the
real server does: domain errors through `server.interceptors.abort_with`, inside the real
`RestInterceptor`, so the gateway sees the server's own REST error metadata. Raw
`context.abort` calls stand for failures that carry no ready body (grpc's own errors).
"""

from __future__ import annotations

import asyncio
import urllib.parse
from typing import TypeVar

import grpc
from google.protobuf import struct_pb2
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from thingwire.auth.v1 import auth_pb2, auth_pb2_grpc
from thingwire.inputs.v1 import inputs_pb2, inputs_pb2_grpc

from server import errors
from server.app import MAX_METADATA_BYTES
from server.interceptors import abort_with
from server.rest_interceptor import RestInterceptor, rest_options_of
from tests.gateway.demo_service import DEMO_SERVICE, demo_service_handler

PASSWORD = "secret"
THROTTLED_EMAIL = "throttled@example.com"
SLOW_TOKEN_ID = 999
BROKEN_TOKEN_ID = 500
UNKNOWN_TOKEN_ID = 501
INTERNAL_DETAIL = "Unexpected <class 'sqlite3.OperationalError'>: /srv/db secret path"
BAD_LOGIN = "invalid username or password"
MAX_MESSAGE_BYTES = 16 * 1024 * 1024
#: Needs every kind of JSON string escape.
AWKWARD_MESSAGE = 'name is required: "" \\ \n\t\x01 é'

T = TypeVar("T")


class _Unmapped(errors.ThingwireError):
    """A domain error without a status of its own: INTERNAL, its message never shown."""


def _metadata(context: grpc.aio.ServicerContext) -> dict[str, str]:
    return {key: value for key, value in context.invocation_metadata() if isinstance(value, str)}


class FakeAuthService(auth_pb2_grpc.AuthServiceServicer):
    """AuthService with fixed answers; see each method for the behaviour it stands for."""

    async def Login(
        self, request: auth_pb2.LoginRequest, context: grpc.aio.ServicerContext
    ) -> auth_pb2.LoginResponse:
        """One password works; a throttled account fails with a retry-after."""
        if request.email == THROTTLED_EMAIL:
            await abort_with(context, errors.Throttled("too many failed logins", retry_after=30))
        if request.password != PASSWORD:
            await abort_with(context, errors.Unauthenticated(BAD_LOGIN))
        user = auth_pb2.User(pk=0, username="", email=request.email, has_devices=False)
        return auth_pb2.LoginResponse(token=f"tok-{request.email}", user=user)

    async def GetCurrentUser(
        self, request: auth_pb2.GetCurrentUserRequest, context: grpc.aio.ServicerContext
    ) -> auth_pb2.User:
        """Echoes the authorization metadata (username), the original path (timezone) and
        the gateway's protocol marker (email), which must never arrive."""
        metadata = _metadata(context)
        return auth_pb2.User(
            pk=1,
            username=metadata.get("authorization", ""),
            timezone=metadata.get("x-envoy-original-path", ""),
            email=metadata.get("x-thingwire-protocol", ""),
        )

    async def CreateToken(
        self, request: auth_pb2.CreateTokenRequest, context: grpc.aio.ServicerContext
    ) -> auth_pb2.CreateTokenResponse:
        """Parses the raw form as the real server does; echoes username and content type."""
        form = dict(urllib.parse.parse_qsl(request.raw.data.decode()))
        if form.get("password", request.password) != PASSWORD:
            await abort_with(context, errors.Unauthenticated(BAD_LOGIN))
        return auth_pb2.CreateTokenResponse(
            access_token=f"access-{form.get('username', request.username)}",
            expires_in=7200,
            refresh_token=request.raw.content_type,
            scope=struct_pb2.Value(null_value=struct_pb2.NULL_VALUE),
            token_type="bearer",
        )

    async def CreateApiToken(
        self, request: auth_pb2.CreateApiTokenRequest, context: grpc.aio.ServicerContext
    ) -> auth_pb2.CreateApiTokenResponse:
        """Refuses an empty name with a message that needs every kind of JSON escape."""
        if not request.name:
            await abort_with(context, errors.InvalidArgument(AWKWARD_MESSAGE))
        return auth_pb2.CreateApiTokenResponse(id=7, name=request.name, token="s3cret")

    async def DeleteApiToken(
        self, request: auth_pb2.DeleteApiTokenRequest, context: grpc.aio.ServicerContext
    ) -> auth_pb2.DeleteApiTokenResponse:
        """Token SLOW_TOKEN_ID never answers in time, BROKEN_TOKEN_ID fails inside with a
        message full of internals; others do not exist."""
        if request.id == SLOW_TOKEN_ID:
            await asyncio.sleep(30)
        if request.id == BROKEN_TOKEN_ID:
            # grpc's own failure: no ready body, only a status whose message must not show.
            await context.abort(grpc.StatusCode.INTERNAL, INTERNAL_DETAIL)
        if request.id == UNKNOWN_TOKEN_ID:
            await abort_with(context, _Unmapped(INTERNAL_DETAIL))
        await abort_with(context, errors.NotFound(f"api token {request.id} not found"))
        raise AssertionError("unreachable")


class FakeInputService(inputs_pb2_grpc.InputServiceServicer):
    """InputService that wants the Datacooee organisation headers."""

    async def ListInputs(
        self, request: inputs_pb2.ListInputsRequest, context: grpc.aio.ServicerContext
    ) -> inputs_pb2.ListInputsResponse:
        """Echoes authorization (as the input's name) and page_size (as the page token)."""
        metadata = _metadata(context)
        if "organization-id" not in metadata:
            await abort_with(context, errors.Unauthenticated("organization headers missing"))
        one = inputs_pb2.Input(id="sen1", name=metadata.get("authorization", ""))
        return inputs_pb2.ListInputsResponse(inputs=[one], next_page_token=str(request.page_size))


async def start_server() -> tuple[grpc.aio.Server, int]:
    """The fake services plus health and reflection on a free loopback port."""
    # The gateway lets REST bodies up to 8 MiB through; gRPC's default limit is 4 MiB.
    services = [
        auth_pb2.DESCRIPTOR.services_by_name["AuthService"],
        inputs_pb2.DESCRIPTOR.services_by_name["InputService"],
        DEMO_SERVICE,
    ]
    server = grpc.aio.server(
        interceptors=[RestInterceptor(rest_options_of(services))],
        options=[
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_metadata_size", MAX_METADATA_BYTES),
        ],
    )
    server.add_generic_rpc_handlers((demo_service_handler(),))
    auth_pb2_grpc.add_AuthServiceServicer_to_server(FakeAuthService(), server)
    inputs_pb2_grpc.add_InputServiceServicer_to_server(FakeInputService(), server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    names = (
        auth_pb2.DESCRIPTOR.services_by_name["AuthService"].full_name,
        inputs_pb2.DESCRIPTOR.services_by_name["InputService"].full_name,
        DEMO_SERVICE.full_name,
        health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
        reflection.SERVICE_NAME,
    )
    reflection.enable_server_reflection(names, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    await health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    return server, port
