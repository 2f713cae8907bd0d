"""A canned in-process `grpc.aio` server for the gateway tests: each rpc shows one behaviour.

It runs on its own event loop in a background thread, so the (synchronous) tests can talk
to it through the real Envoy with httpx and synchronous gRPC stubs.
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

PASSWORD = "secret"
THROTTLED_EMAIL = "throttled@example.com"
SLOW_TOKEN_ID = 999
BROKEN_TOKEN_ID = 500
INTERNAL_DETAIL = "Unexpected <class 'sqlite3.OperationalError'>: /srv/db secret path"
BAD_LOGIN = "invalid username or password"
MAX_MESSAGE_BYTES = 16 * 1024 * 1024
#: Needs every kind of JSON string escape.
AWKWARD_MESSAGE = 'name is required: "" \\ \n\t\x01 é'

T = TypeVar("T")


def _metadata(context: grpc.aio.ServicerContext) -> dict[str, str]:
    return {key: value for key, value in context.invocation_metadata() if isinstance(value, str)}


class FakeAuthService(auth_pb2_grpc.AuthServiceServicer):
    """AuthService with fixed answers; see each method for the behaviour it stands for."""

    async def Login(
        self, request: auth_pb2.LoginRequest, context: grpc.aio.ServicerContext
    ) -> auth_pb2.LoginResponse:
        """One password works; a throttled account sends x-retry-after, then fails."""
        if request.email == THROTTLED_EMAIL:
            await context.send_initial_metadata((("x-retry-after", "30"),))
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, "too many failed logins")
        if request.password != PASSWORD:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, BAD_LOGIN)
        user = auth_pb2.User(pk=0, username="", email=request.email, has_devices=False)
        return auth_pb2.LoginResponse(token=f"tok-{request.email}", user=user)

    async def GetCurrentUser(
        self, request: auth_pb2.GetCurrentUserRequest, context: grpc.aio.ServicerContext
    ) -> auth_pb2.User:
        """Echoes the authorization metadata (username) and the original path (timezone)."""
        metadata = _metadata(context)
        return auth_pb2.User(
            pk=1,
            username=metadata.get("authorization", ""),
            timezone=metadata.get("x-envoy-original-path", ""),
        )

    async def CreateToken(
        self, request: auth_pb2.CreateTokenRequest, context: grpc.aio.ServicerContext
    ) -> auth_pb2.CreateTokenResponse:
        """Parses the raw form as the real server does; echoes username and content type."""
        form = dict(urllib.parse.parse_qsl(request.raw.data.decode()))
        if form.get("password", request.password) != PASSWORD:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, BAD_LOGIN)
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
        """Answers 201 Created through the x-http-status initial metadata."""
        if not request.name:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT, 'name is required: "" \\ \n\t\x01 é'
            )
        await context.send_initial_metadata((("x-http-status", "201"),))
        return auth_pb2.CreateApiTokenResponse(id=7, name=request.name, token="s3cret")

    async def DeleteApiToken(
        self, request: auth_pb2.DeleteApiTokenRequest, context: grpc.aio.ServicerContext
    ) -> auth_pb2.DeleteApiTokenResponse:
        """Token SLOW_TOKEN_ID never answers in time, BROKEN_TOKEN_ID fails inside with a
        message full of internals; others do not exist."""
        if request.id == SLOW_TOKEN_ID:
            await asyncio.sleep(30)
        if request.id == BROKEN_TOKEN_ID:
            await context.abort(grpc.StatusCode.INTERNAL, INTERNAL_DETAIL)
        await context.abort(grpc.StatusCode.NOT_FOUND, f"api token {request.id} not found")
        raise AssertionError("unreachable")


class FakeInputService(inputs_pb2_grpc.InputServiceServicer):
    """InputService that wants the Datacooee organisation headers."""

    async def ListInputs(
        self, request: inputs_pb2.ListInputsRequest, context: grpc.aio.ServicerContext
    ) -> inputs_pb2.ListInputsResponse:
        """Echoes authorization (as the input's name) and page_size (as the page token)."""
        metadata = _metadata(context)
        if "organization-id" not in metadata:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "organization headers missing")
        one = inputs_pb2.Input(id="sen1", name=metadata.get("authorization", ""))
        return inputs_pb2.ListInputsResponse(inputs=[one], next_page_token=str(request.page_size))


async def start_server() -> tuple[grpc.aio.Server, int]:
    """The fake services plus health and reflection on a free loopback port."""
    # The gateway lets REST bodies up to 8 MiB through; gRPC's default limit is 4 MiB.
    server = grpc.aio.server(options=[("grpc.max_receive_message_length", MAX_MESSAGE_BYTES)])
    auth_pb2_grpc.add_AuthServiceServicer_to_server(FakeAuthService(), server)
    inputs_pb2_grpc.add_InputServiceServicer_to_server(FakeInputService(), server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    names = (
        auth_pb2.DESCRIPTOR.services_by_name["AuthService"].full_name,
        inputs_pb2.DESCRIPTOR.services_by_name["InputService"].full_name,
        health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
        reflection.SERVICE_NAME,
    )
    reflection.enable_server_reflection(names, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    await health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    return server, port
