"""The interceptor on a real grpc.aio server: admission first, errors mapped once.

A probe service has one method of each kind of rpc. A request body names when the method
fails ("before" or "after" its first message) and how (see `_raise`), so every kind is
checked with every kind of error at both points.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import grpc
import pytest
from google.protobuf import wrappers_pb2

from server import errors
from server.auth.authenticator import Access
from server.auth.principal import UserPrincipal, current_principal
from server.interceptors import (
    INTERNAL_ERROR,
    MALFORMED_REQUEST,
    ServerInterceptor,
    WrappedHandlers,
)
from tests.support import serving

SERVICE = "test.v1.Probe"
UNLISTED = "thingwire.test.v1.Unlisted"
FOREIGN = "other.v1.Thing"
OPEN = "open.v1.Infra"
KINDS = ("Unary", "ServerStream", "ClientStream", "Bidi", "WriteStream")
STREAMED_RESPONSES = ("ServerStream", "Bidi", "WriteStream")
#: Bytes that are not valid protobuf (field 1 with the undefined wire type 7).
MALFORMED = b"\x0f"
AUTHORIZED = (("authorization", "ok"),)


class FakeAuthenticator:
    """Accepts exactly the metadata `authorization: ok`."""

    async def authenticate(self, metadata: Mapping[str, str], access: int) -> UserPrincipal | None:
        if access == Access.ACCESS_PUBLIC:
            return None
        if metadata.get("authorization") != "ok":
            raise errors.Unauthenticated("authentication credentials were not provided")
        return UserPrincipal(user_id=7, username="ada")


def _raise(kind: str) -> None:
    if kind == "not_found":
        raise errors.NotFound("no such thing")
    if kind == "throttled":
        raise errors.Throttled("slow down", retry_after=12)
    if kind == "bug":
        raise ValueError("secret internal detail")


def _who() -> bytes:
    principal = current_principal.get()
    return (principal.username if isinstance(principal, UserPrincipal) else "anonymous").encode()


async def unary(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
    _raise(request.decode().partition(":")[2])
    return _who()


async def server_stream(request: bytes, context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
    when, _, kind = request.decode().partition(":")
    if when == "before":
        _raise(kind)
    yield _who()
    yield b"two"
    _raise(kind)


async def write_stream(request: bytes, context: grpc.aio.ServicerContext) -> None:
    """A server stream that writes instead of yielding (as a device link's writer task does)."""
    when, _, kind = request.decode().partition(":")
    if when == "before":
        _raise(kind)
    await context.write(_who())
    _raise(kind)


async def client_stream(requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext) -> bytes:
    """Fails on reading a failing request: the first ("before") or a later one ("after")."""
    async for request in requests:
        _raise(request.decode().partition(":")[2])
    return _who()


async def bidi(
    requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext
) -> AsyncIterator[bytes]:
    async for request in requests:
        when, _, kind = request.decode().partition(":")
        if when == "before":
            _raise(kind)
        yield _who()
        _raise(kind)


async def parse(request: wrappers_pb2.StringValue, context: grpc.aio.ServicerContext) -> bytes:
    return request.value.encode()


async def parse_stream(
    requests: AsyncIterator[wrappers_pb2.StringValue], context: grpc.aio.ServicerContext
) -> bytes:
    return b",".join([request.value.encode() async for request in requests])


def _probe_handlers() -> dict[str, grpc.RpcMethodHandler]:
    parse_request = wrappers_pb2.StringValue.FromString
    return {
        "Public": grpc.unary_unary_rpc_method_handler(unary),
        "Unary": grpc.unary_unary_rpc_method_handler(unary),
        "ServerStream": grpc.unary_stream_rpc_method_handler(server_stream),
        "WriteStream": grpc.unary_stream_rpc_method_handler(write_stream),
        "ClientStream": grpc.stream_unary_rpc_method_handler(client_stream),
        "Bidi": grpc.stream_stream_rpc_method_handler(bidi),
        "Parse": grpc.unary_unary_rpc_method_handler(parse, request_deserializer=parse_request),
        "ParseStream": grpc.stream_unary_rpc_method_handler(
            parse_stream, request_deserializer=parse_request
        ),
    }


@pytest.fixture(scope="module")
def channel() -> Iterator[grpc.Channel]:
    handlers = _probe_handlers()
    levels = {f"/{SERVICE}/{name}": Access.ACCESS_USER for name in handlers}
    levels[f"/{SERVICE}/Public"] = Access.ACCESS_PUBLIC
    interceptor = ServerInterceptor(FakeAuthenticator(), levels, open_services=[OPEN])
    unary_only = {"Call": grpc.unary_unary_rpc_method_handler(unary)}
    generic = [
        grpc.method_handlers_generic_handler(SERVICE, handlers),
        # Registered, but in no table of levels: must never be served.
        grpc.method_handlers_generic_handler(UNLISTED, unary_only),
        grpc.method_handlers_generic_handler(FOREIGN, unary_only),
        grpc.method_handlers_generic_handler(OPEN, unary_only),
    ]
    with serving([interceptor], generic) as ch:
        yield ch


@dataclass
class Outcome:
    """What the client saw: the messages received, then the error (None if it succeeded)."""

    received: list[bytes]
    error: grpc.RpcError | None

    @property
    def code(self) -> grpc.StatusCode:
        return self.error.code() if self.error is not None else grpc.StatusCode.OK

    @property
    def details(self) -> str | None:
        return self.error.details() if self.error is not None else None

    def trailers(self) -> dict[str, str]:
        assert self.error is not None
        return dict(self.error.trailing_metadata() or ())

    def headers(self) -> dict[str, str]:
        assert self.error is not None
        return dict(self.error.initial_metadata() or ())


def call(
    channel: grpc.Channel, kind: str, body: str, metadata: tuple[tuple[str, str], ...] = AUTHORIZED
) -> Outcome:
    """Call the probe's method `kind` with `body`; a client stream sends ["fine", body]."""
    path = f"/{SERVICE}/{kind}"
    received: list[bytes] = []
    try:
        if kind in ("Unary", "Public"):
            received.append(channel.unary_unary(path)(body.encode(), metadata=metadata, timeout=5))
        elif kind in ("ServerStream", "WriteStream"):
            rpc = channel.unary_stream(path)
            received.extend(rpc(body.encode(), metadata=metadata, timeout=5))
        elif kind == "ClientStream":
            first = body if body.startswith("before") else "after:fine"
            requests = iter([first.encode(), body.encode()])
            received.append(channel.stream_unary(path)(requests, metadata=metadata, timeout=5))
        else:
            rpc = channel.stream_stream(path)
            received.extend(rpc(iter([body.encode()]), metadata=metadata, timeout=5))
    except grpc.RpcError as error:
        return Outcome(received, error)
    return Outcome(received, None)


def test_public_rpc_needs_no_credentials(channel: grpc.Channel) -> None:
    assert call(channel, "Public", "after:fine", metadata=()).received == [b"anonymous"]


@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_sees_the_principal(channel: grpc.Channel, kind: str) -> None:
    outcome = call(channel, kind, "after:fine")
    assert outcome.code == grpc.StatusCode.OK
    assert outcome.received[0] == b"ada"


@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_is_authenticated(channel: grpc.Channel, kind: str) -> None:
    outcome = call(channel, kind, "after:fine", metadata=())
    assert (outcome.code, outcome.received) == (grpc.StatusCode.UNAUTHENTICATED, [])


@pytest.mark.parametrize("when", ["before", "after"])
@pytest.mark.parametrize("kind", KINDS)
def test_domain_error_maps_to_its_code(channel: grpc.Channel, kind: str, when: str) -> None:
    outcome = call(channel, kind, f"{when}:not_found")
    assert (outcome.code, outcome.details) == (grpc.StatusCode.NOT_FOUND, "no such thing")


@pytest.mark.parametrize("when", ["before", "after"])
@pytest.mark.parametrize("kind", KINDS)
def test_throttle_carries_retry_after(channel: grpc.Channel, kind: str, when: str) -> None:
    """Retry-After rides in the trailers, before or after a stream's first message (a REST
    call's trailers are its headers); the status is still RESOURCE_EXHAUSTED (not grpc's
    UsageError), and nothing is sent as initial metadata."""
    outcome = call(channel, kind, f"{when}:throttled")
    assert (outcome.code, outcome.details) == (grpc.StatusCode.RESOURCE_EXHAUSTED, "slow down")
    assert outcome.trailers()["retry-after"] == "12"
    assert "x-retry-after" not in outcome.headers()


@pytest.mark.parametrize("when", ["before", "after"])
@pytest.mark.parametrize("kind", KINDS)
def test_unexpected_error_is_internal_and_hides_its_detail(
    channel: grpc.Channel, kind: str, when: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="server.interceptors"):
        outcome = call(channel, kind, f"{when}:bug")
    assert (outcome.code, outcome.details) == (grpc.StatusCode.INTERNAL, INTERNAL_ERROR)
    assert f"unexpected error in /{SERVICE}/{kind}" in caplog.text


@pytest.mark.parametrize("kind", STREAMED_RESPONSES)
def test_stream_error_after_a_message_keeps_what_was_sent(channel: grpc.Channel, kind: str) -> None:
    outcome = call(channel, kind, "after:not_found")
    assert outcome.received[0] == b"ada"
    assert outcome.code == grpc.StatusCode.NOT_FOUND


def test_stream_completes(channel: grpc.Channel) -> None:
    assert call(channel, "ServerStream", "after:fine").received == [b"ada", b"two"]


@pytest.mark.parametrize("service", [UNLISTED, FOREIGN])
def test_a_method_without_a_level_is_refused_and_logged(
    channel: grpc.Channel, service: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Registered but in no table of levels: refused even with credentials, never run."""
    for metadata in ((), AUTHORIZED):
        with caplog.at_level(logging.ERROR, logger="server.interceptors"):
            rpc = channel.unary_unary(f"/{service}/Call")
            with pytest.raises(grpc.RpcError) as info:
                rpc(b"after:fine", metadata=metadata, timeout=5)
        assert (info.value.code(), info.value.details()) == (
            grpc.StatusCode.INTERNAL,
            INTERNAL_ERROR,
        )
        assert f"refused /{service}/Call" in caplog.text


def test_an_open_service_needs_no_credentials(channel: grpc.Channel) -> None:
    assert channel.unary_unary(f"/{OPEN}/Call")(b"after:fine", timeout=5) == b"anonymous"


def test_an_unknown_method_is_unimplemented(channel: grpc.Channel) -> None:
    with pytest.raises(grpc.RpcError) as info:
        channel.unary_unary(f"/{SERVICE}/Nope")(b"", metadata=AUTHORIZED, timeout=5)
    assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED


@pytest.mark.parametrize("method", ["Parse", "ParseStream"])
def test_malformed_protobuf_is_invalid_argument_without_a_traceback(
    channel: grpc.Channel, method: str, caplog: pytest.LogCaptureFixture
) -> None:
    path = f"/{SERVICE}/{method}"
    good = wrappers_pb2.StringValue(value="ok").SerializeToString()

    def send() -> object:
        if method == "Parse":
            return channel.unary_unary(path)(MALFORMED, metadata=AUTHORIZED, timeout=5)
        stream = channel.stream_unary(path)
        return stream(iter([good, MALFORMED]), metadata=AUTHORIZED, timeout=5)

    with caplog.at_level(logging.DEBUG), pytest.raises(grpc.RpcError) as info:
        send()
    assert (info.value.code(), info.value.details()) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        MALFORMED_REQUEST,
    )
    assert not [record for record in caplog.records if record.exc_info]
    assert "DecodeError" not in caplog.text


def test_well_formed_protobuf_still_parses(channel: grpc.Channel) -> None:
    body = wrappers_pb2.StringValue(value="hello").SerializeToString()
    assert channel.unary_unary(f"/{SERVICE}/Parse")(body, metadata=AUTHORIZED) == b"hello"
    stream = channel.stream_unary(f"/{SERVICE}/ParseStream")
    assert stream(iter([body, body]), metadata=AUTHORIZED) == b"hello,hello"


# --- Wrapped handlers, built once per method ------------------------------------------------


async def _answer(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
    return request


def test_a_methods_wrapped_handler_is_built_on_its_first_call_only() -> None:
    table = WrappedHandlers()
    handler = grpc.unary_unary_rpc_method_handler(_answer)
    built: list[object] = []

    def wrap() -> object:
        built.append(object())
        return built[-1]

    first = table.get("/a.v1.S/M", handler, wrap)
    assert table.get("/a.v1.S/M", handler, wrap) is first
    assert table.get("/a.v1.S/Other", handler, wrap) is not first
    assert len(built) == 2


def test_a_new_handler_for_a_method_is_wrapped_anew() -> None:
    table = WrappedHandlers()
    first = table.get("/a.v1.S/M", grpc.unary_unary_rpc_method_handler(_answer), object)
    second = table.get("/a.v1.S/M", grpc.unary_unary_rpc_method_handler(_answer), object)
    assert second is not first


def test_the_interceptor_hands_out_one_guarded_handler_per_method() -> None:
    interceptor = ServerInterceptor(FakeAuthenticator(), {"/a.v1.S/M": 0})
    handler = grpc.unary_unary_rpc_method_handler(_answer)

    async def continuation(details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler:
        return handler

    details = SimpleNamespace(method="/a.v1.S/M", invocation_metadata=())

    async def twice() -> tuple[Any, Any]:
        return (
            await interceptor.intercept_service(continuation, details),
            await interceptor.intercept_service(continuation, details),
        )

    first, second = asyncio.run(twice())
    assert first is second
    assert first is not handler
