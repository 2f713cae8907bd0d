"""The one place where calls are authenticated and domain errors become gRPC status codes.

Servicers stay thin: they raise `server.errors` exceptions and never touch status codes
(docs/design.md, "Patterns we follow"). Each rpc's access level is read from the
`thingwire.options.v1.access` method option, so the policy lives beside the rpc in proto/.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any

import grpc
from google.protobuf import descriptor
from thingwire.options.v1 import options_pb2

from server import errors
from server.auth.authenticator import Authenticator
from server.auth.principal import current_principal
from server.request_origin import metadata_of

log = logging.getLogger(__name__)

STATUS_BY_ERROR: dict[type[errors.ThingwireError], grpc.StatusCode] = {
    errors.InvalidArgument: grpc.StatusCode.INVALID_ARGUMENT,
    errors.Unauthenticated: grpc.StatusCode.UNAUTHENTICATED,
    errors.PermissionDenied: grpc.StatusCode.PERMISSION_DENIED,
    errors.NotFound: grpc.StatusCode.NOT_FOUND,
    errors.AlreadyExists: grpc.StatusCode.ALREADY_EXISTS,
    errors.FailedPrecondition: grpc.StatusCode.FAILED_PRECONDITION,
    errors.Throttled: grpc.StatusCode.RESOURCE_EXHAUSTED,
    errors.Unavailable: grpc.StatusCode.UNAVAILABLE,
    errors.DeadlineExceeded: grpc.StatusCode.DEADLINE_EXCEEDED,
}


def status_for(error: errors.ThingwireError) -> grpc.StatusCode:
    """The status code of a domain error, by its nearest mapped class."""
    for cls in type(error).__mro__:
        if cls in STATUS_BY_ERROR:
            return STATUS_BY_ERROR[cls]
    return grpc.StatusCode.INTERNAL


def access_levels(services: Iterable[descriptor.ServiceDescriptor]) -> dict[str, int]:
    """Map "/pkg.Service/Method" to its declared Access, for every rpc of `services`."""
    levels: dict[str, int] = {}
    for service in services:
        for method in service.methods:
            access = method.GetOptions().Extensions[options_pb2.access]
            levels[f"/{service.full_name}/{method.name}"] = access
    return levels


async def abort_with(context: grpc.aio.ServicerContext, error: errors.ThingwireError) -> None:
    """Abort the call with the error's status; a throttle also says when to retry."""
    trailing: tuple[tuple[str, str], ...] = ()
    if isinstance(error, errors.Throttled):
        retry_after = str(error.retry_after)
        # Initial metadata reaches the REST gateway (Retry-After); trailers reach gRPC clients.
        await context.send_initial_metadata((("x-retry-after", retry_after),))
        trailing = (("retry-after", retry_after),)
    await context.abort(status_for(error), error.message, trailing)


class ServerInterceptor(grpc.aio.ServerInterceptor):
    """Authenticates every call of our services and maps domain errors to status codes.

    Methods outside `levels` (health, reflection) pass through untouched.
    """

    def __init__(self, authenticator: Authenticator, levels: dict[str, int]) -> None:
        self._authenticator = authenticator
        self._levels = levels

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        access = self._levels.get(handler_call_details.method)
        if handler is None or access is None:
            return handler
        return _wrap(handler, self._authenticator, access)


@contextlib.asynccontextmanager
async def _guarded(
    auth: Authenticator, access: int, context: grpc.aio.ServicerContext, name: str
) -> AsyncIterator[None]:
    """Authenticate the call, expose its principal, and turn any error into a status.

    Domain errors become their mapped code; anything unexpected is logged and becomes
    INTERNAL with a generic message, so no traceback or detail leaks to the caller.
    """
    try:
        token = current_principal.set(await auth.authenticate(metadata_of(context), access))
        try:
            yield
        finally:
            current_principal.reset(token)
    except errors.ThingwireError as error:
        await abort_with(context, error)
    except grpc.aio.AbortError:
        raise
    except Exception:
        log.exception("unexpected error in %s", name)
        await context.abort(grpc.StatusCode.INTERNAL, "internal error")


def _wrap(handler: grpc.RpcMethodHandler, auth: Authenticator, access: int) -> Any:
    """A copy of `handler` whose behaviour runs inside `_guarded`."""
    serializers = {
        "request_deserializer": handler.request_deserializer,
        "response_serializer": handler.response_serializer,
    }
    if handler.unary_unary or handler.stream_unary:
        inner = handler.unary_unary or handler.stream_unary
        name = getattr(inner, "__qualname__", "rpc")

        async def unary_response(request: Any, context: grpc.aio.ServicerContext) -> Any:
            async with _guarded(auth, access, context, name):
                return await inner(request, context)

        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(unary_response, **serializers)
        return grpc.stream_unary_rpc_method_handler(unary_response, **serializers)

    inner_stream = handler.unary_stream or handler.stream_stream
    stream_name = getattr(inner_stream, "__qualname__", "rpc")

    async def streaming_response(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator:
        async with _guarded(auth, access, context, stream_name):
            async for item in inner_stream(request, context):
                yield item

    if handler.unary_stream:
        return grpc.unary_stream_rpc_method_handler(streaming_response, **serializers)
    return grpc.stream_stream_rpc_method_handler(streaming_response, **serializers)
