"""RestInterceptor with the auth interceptor on a real grpc.aio server: every error of a
REST rpc carries its family's body, at any point of a call; a declared status is sent."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import grpc
import pytest
from google.api import annotations_pb2
from thingwire.auth.v1 import auth_pb2
from thingwire.options.v1 import options_pb2

from gateway.http_rules import PathTemplate
from server import errors
from server.app import SERVICES
from server.auth.principal import UserPrincipal
from server.interceptors import MALFORMED_REQUEST, ServerInterceptor
from server.rest_errors import ERROR_BODY_KEY, HTTP_STATUS_KEY
from server.rest_interceptor import (
    MAX_REMEMBERED_PATH,
    RestInterceptor,
    RestOptions,
    bind_path,
    path_values,
    rest_options_of,
)
from server.storage import users
from tests.server.conftest import ServerUnderTest
from tests.support import serving

SERVICE = "test.v1.Rest"
THINGER = RestOptions(family=options_pb2.API_FAMILY_THINGER)
CREATED = RestOptions(family=options_pb2.API_FAMILY_DATACOOEE, success_status=201)


class NeedsOk:
    """Accepts exactly the metadata `authorization: ok`."""

    async def authenticate(self, metadata: dict[str, str], access: int) -> UserPrincipal:
        if metadata.get("authorization") != "ok":
            raise errors.Unauthenticated("credentials missing")
        return UserPrincipal(user_id=7, username="ada")


async def unary(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
    if request == b"throttled":
        raise errors.Throttled("slow down", retry_after=12)
    if request == b"missing":
        raise errors.NotFound("no such thing")
    return b"done"


async def stream(request: bytes, context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
    yield b"one"
    raise errors.NotFound("gone mid-stream")


@pytest.fixture(scope="module")
def channel() -> Iterator[grpc.Channel]:
    options = {
        f"/{SERVICE}/Thinger": THINGER,
        f"/{SERVICE}/Create": CREATED,
        f"/{SERVICE}/Plain": RestOptions(),
        f"/{SERVICE}/Stream": THINGER,
    }
    levels = {method: options_pb2.ACCESS_USER for method in options}
    interceptors = [RestInterceptor(options), ServerInterceptor(NeedsOk(), levels)]  # type: ignore[arg-type]
    handlers: dict[str, Any] = {
        name: grpc.unary_unary_rpc_method_handler(unary) for name in ("Thinger", "Create", "Plain")
    }
    handlers["Stream"] = grpc.unary_stream_rpc_method_handler(stream)
    with serving(interceptors, [grpc.method_handlers_generic_handler(SERVICE, handlers)]) as ch:
        yield ch


OK = (("authorization", "ok"),)


def _fail(channel: grpc.Channel, method: str, body: bytes, metadata: Any = OK) -> grpc.RpcError:
    path = f"/{SERVICE}/{method}"
    if method == "Stream":
        with pytest.raises(grpc.RpcError) as caught:
            list(channel.unary_stream(path)(body, metadata=metadata, timeout=5))
        return caught.value
    with pytest.raises(grpc.RpcError) as caught:
        channel.unary_unary(path)(body, metadata=metadata, timeout=5)
    return caught.value


def _trailers(error: grpc.RpcError) -> dict[str, str]:
    return {key: value for key, value in error.trailing_metadata()}


def test_a_domain_error_carries_the_family_body(channel: grpc.Channel) -> None:
    trailers = _trailers(_fail(channel, "Thinger", b"missing"))
    assert trailers[HTTP_STATUS_KEY] == "404"
    assert json.loads(trailers[ERROR_BODY_KEY]) == {"error": {"message": "no such thing"}}


def test_an_authentication_error_carries_the_family_body_too(channel: grpc.Channel) -> None:
    trailers = _trailers(_fail(channel, "Create", b"", metadata=()))
    assert json.loads(trailers[ERROR_BODY_KEY]) == {
        "errors": [{"status": "401", "title": "Unauthorized", "detail": "credentials missing"}]
    }


def test_a_throttle_carries_retry_after_and_its_body(channel: grpc.Channel) -> None:
    error = _fail(channel, "Thinger", b"throttled")
    trailers = _trailers(error)
    assert trailers["retry-after"] == "12"
    assert trailers[HTTP_STATUS_KEY] == "429"
    assert dict(error.initial_metadata()) == {}


def test_an_error_after_the_first_message_still_carries_its_body(channel: grpc.Channel) -> None:
    error = _fail(channel, "Stream", b"")
    assert error.code() is grpc.StatusCode.NOT_FOUND
    assert json.loads(_trailers(error)[ERROR_BODY_KEY]) == {"error": {"message": "gone mid-stream"}}


def test_an_rpc_without_a_family_has_no_rest_body(channel: grpc.Channel) -> None:
    assert ERROR_BODY_KEY not in _trailers(_fail(channel, "Plain", b"missing"))


def test_a_declared_success_status_is_sent(channel: grpc.Channel) -> None:
    _, call = channel.unary_unary(f"/{SERVICE}/Create").with_call(b"", metadata=OK, timeout=5)
    assert dict(call.initial_metadata())[HTTP_STATUS_KEY] == "201"


def test_no_declared_status_sends_nothing(channel: grpc.Channel) -> None:
    _, call = channel.unary_unary(f"/{SERVICE}/Thinger").with_call(b"", metadata=OK, timeout=5)
    assert HTTP_STATUS_KEY not in dict(call.initial_metadata())


def test_every_rest_rpc_of_the_server_declares_its_family() -> None:
    options = rest_options_of(service.descriptor for service in SERVICES)
    assert options, "no services"
    rest_rpcs = {
        f"/{service.descriptor.full_name}/{method.name}"
        for service in SERVICES
        for method in service.descriptor.methods
        if method.GetOptions().HasExtension(annotations_pb2.http)
    }
    undeclared = [method for method in rest_rpcs if not options[method].family]
    assert undeclared == []
    # The device link has no REST face, so no family either.
    assert not options["/thingwire.agent.v1.AgentService/Connect"].family
    assert options["/thingwire.auth.v1.AuthService/CreateToken"] == THINGER
    assert options["/thingwire.auth.v1.AuthService/Login"].family == options_pb2.API_FAMILY_AUTOPI


CREATE_ACCESS_TOKEN = "/thingwire.auth.v1.AuthService/CreateAccessToken"


@pytest.mark.parametrize(
    ("metadata", "user_id"),
    [
        ((("x-envoy-original-path", "/v1/users/al%69ce/tokens/?user_id=bob"),), "alice"),
        ((("x-envoy-original-path", "/v1/users/alice"),), "bob"),  # not the rpc's path
        ((), "bob"),  # native gRPC: the caller sets its fields itself
    ],
)
def test_the_path_sets_its_fields_again(
    metadata: tuple[tuple[str, str], ...], user_id: str
) -> None:
    """The path wins over whatever the body or the query set, decoded as the transcoder
    decodes it; without a REST path of the rpc nothing changes."""
    options = rest_options_of(service.descriptor for service in SERVICES)[CREATE_ACCESS_TOKEN]
    request = auth_pb2.CreateAccessTokenRequest(user_id="bob", token_name="x")
    bind_path(request, metadata, options)
    assert (request.user_id, request.token_name) == (user_id, "x")


def test_an_integer_bound_by_the_path_is_set_from_it() -> None:
    options = rest_options_of(service.descriptor for service in SERVICES)[
        "/thingwire.auth.v1.AuthService/DeleteApiToken"
    ]
    request = auth_pb2.DeleteApiTokenRequest(id=11)
    bind_path(request, (("x-envoy-original-path", "/auth/api_tokens/5?i%64=11"),), options)
    assert request.id == 5


def test_a_malformed_request_with_a_rest_path_is_invalid_argument(
    grpc_server: ServerUnderTest,
) -> None:
    """Re-binding the path must not touch a request whose bytes did not parse: the guard
    answers it, as for any malformed request."""
    with grpc_server.database.session() as s:
        users.create_user(s, "ada@example.com", "a-long-password", "ada")
    login = grpc_server.auth.Login(
        auth_pb2.LoginRequest(email="ada@example.com", password="a-long-password")
    )
    metadata = (
        ("authorization", f"Bearer {login.token}"),
        ("x-envoy-original-path", "/auth/api_tokens/5"),
    )
    call = grpc_server.channel.unary_unary("/thingwire.auth.v1.AuthService/DeleteApiToken")
    with pytest.raises(grpc.RpcError) as info:
        call(b"\x0f", metadata=metadata, timeout=5)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert info.value.details() == MALFORMED_REQUEST


def test_path_values_are_remembered_per_path_and_ignore_the_query() -> None:
    path_values.cache_clear()
    paths = (PathTemplate("/v1/users/{user_id}/devices/{device_id}"),)
    first = path_values(paths, "/v1/users/ada/devices/car")
    assert first == (("user_id", "ada"), ("device_id", "car"))
    assert path_values(paths, "/v1/users/ada/devices/car") is first
    assert path_values.cache_info().hits == 1
    assert path_values(paths, "/v1/users/bob/devices/car%201") == (
        ("user_id", "bob"),
        ("device_id", "car 1"),
    )
    assert path_values(paths, "/v1/other") == ()


def test_bind_path_binds_the_path_not_its_query() -> None:
    request = auth_pb2.DeleteApiTokenRequest()
    options = RestOptions(paths=(PathTemplate("/auth/api_tokens/{id}"),))
    bind_path(request, (("x-envoy-original-path", "/auth/api_tokens/5?id=11"),), options)
    assert request.id == 5


def test_a_long_path_is_bound_but_not_remembered() -> None:
    # The memory is bounded by count; a path may have up to the gateway's 8 KiB, so only
    # short ones (a device's calls) are kept: 4096 long ones would hold tens of MB.
    path_values.cache_clear()
    request = auth_pb2.DeleteApiTokenRequest()
    options = RestOptions(paths=(PathTemplate("/auth/api_tokens/{id}"),))
    long_path = "/auth/api_tokens/" + "0" * (MAX_REMEMBERED_PATH + 1) + "7"
    bind_path(request, (("x-envoy-original-path", long_path),), options)
    assert request.id == 7
    assert path_values.cache_info().currsize == 0
    bind_path(request, (("x-envoy-original-path", "/auth/api_tokens/8"),), options)
    assert request.id == 8
    assert path_values.cache_info().currsize == 1
