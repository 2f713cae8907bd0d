"""The interceptor on a real grpc.aio server: authentication first, errors mapped once."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any, cast

import grpc
import pytest

from server import errors
from server.auth.authenticator import Access, Authenticator
from server.auth.principal import UserPrincipal, current_principal
from server.interceptors import ServerInterceptor
from tests.support import LoopThread

SERVICE = "test.v1.Probe"


class FakeAuthenticator:
    """Accepts exactly the metadata `authorization: ok`."""

    async def authenticate(self, metadata: dict[str, str], access: int) -> UserPrincipal | None:
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


async def unary(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
    _raise(request.decode())
    principal = current_principal.get()
    return (principal.username if isinstance(principal, UserPrincipal) else "anonymous").encode()


async def stream(request: bytes, context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
    yield b"one"
    yield b"two"
    _raise(request.decode())


def _handler(method: str) -> Any:
    if method == "Stream":
        return grpc.unary_stream_rpc_method_handler(stream)
    return grpc.unary_unary_rpc_method_handler(unary)


@pytest.fixture(scope="module")
def channel() -> Iterator[grpc.Channel]:
    levels: dict[str, int] = {
        f"/{SERVICE}/Public": Access.ACCESS_PUBLIC,
        f"/{SERVICE}/Private": Access.ACCESS_USER,
        f"/{SERVICE}/Stream": Access.ACCESS_USER,
    }
    loop = LoopThread()

    async def start() -> tuple[grpc.aio.Server, int]:
        server = grpc.aio.server(
            interceptors=[ServerInterceptor(cast(Authenticator, FakeAuthenticator()), levels)]
        )
        server.add_generic_rpc_handlers(
            [
                grpc.method_handlers_generic_handler(
                    SERVICE, {m: _handler(m) for m in ("Public", "Private", "Stream")}
                )
            ]
        )
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        return server, port

    server, port = loop.run(start)
    with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
        yield ch
    loop.run(lambda: server.stop(0))
    loop.close()


def call(channel: grpc.Channel, method: str, body: str, authorized: bool = True) -> Any:
    metadata = (("authorization", "ok"),) if authorized else ()
    if method == "Stream":
        rpc = channel.unary_stream(f"/{SERVICE}/Stream")
        return list(rpc(body.encode(), metadata=metadata, timeout=5))
    return channel.unary_unary(f"/{SERVICE}/{method}")(body.encode(), metadata=metadata, timeout=5)


def failure(
    channel: grpc.Channel, method: str, body: str, authorized: bool = True
) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        call(channel, method, body, authorized)
    return info.value


def test_public_rpc_needs_no_credentials(channel: grpc.Channel) -> None:
    assert call(channel, "Public", "fine", authorized=False) == b"anonymous"


def test_private_rpc_sees_the_principal(channel: grpc.Channel) -> None:
    assert call(channel, "Private", "fine") == b"ada"


def test_private_rpc_without_credentials(channel: grpc.Channel) -> None:
    error = failure(channel, "Private", "fine", authorized=False)
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED


def test_domain_error_maps_to_its_code(channel: grpc.Channel) -> None:
    error = failure(channel, "Private", "not_found")
    assert (error.code(), error.details()) == (grpc.StatusCode.NOT_FOUND, "no such thing")


def test_throttle_carries_retry_after(channel: grpc.Channel) -> None:
    error = failure(channel, "Private", "throttled")
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert dict(error.trailing_metadata())["retry-after"] == "12"
    assert dict(error.initial_metadata())["x-retry-after"] == "12"


def test_unexpected_error_is_internal_and_hides_its_detail(channel: grpc.Channel) -> None:
    error = failure(channel, "Private", "bug")
    assert (error.code(), error.details()) == (grpc.StatusCode.INTERNAL, "internal error")


def test_stream_is_authenticated_too(channel: grpc.Channel) -> None:
    error = failure(channel, "Stream", "fine", authorized=False)
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED


def test_stream_error_after_items_keeps_its_code(channel: grpc.Channel) -> None:
    rpc = channel.unary_stream(f"/{SERVICE}/Stream")
    received = []
    with pytest.raises(grpc.RpcError) as info:
        received.extend(rpc(b"not_found", metadata=(("authorization", "ok"),), timeout=5))
    assert received == [b"one", b"two"]
    assert info.value.code() == grpc.StatusCode.NOT_FOUND


def test_stream_completes(channel: grpc.Channel) -> None:
    assert call(channel, "Stream", "fine") == [b"one", b"two"]
