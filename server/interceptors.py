"""The one place where calls are admitted and every error becomes a gRPC status.

Servicers stay thin: they raise `server.errors` exceptions and never touch status codes
(docs/design.md, "Patterns we follow"; docs/architecture.md, "Errors"). Each rpc's access
level is read from the `thingwire.options.v1.access` method option, so the policy lives
beside the rpc in proto/. Authentication fails closed: a method with no level that is not
one of the open infrastructure services (health, reflection) is refused, never served.

Every kind of rpc (unary, server-, client- and bidirectional streaming) runs inside one
guard, and every error leaves through `abort_with`, before or after the first message.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from typing import Any, NoReturn, Protocol

import grpc
from google.protobuf import descriptor, message
from thingwire.options.v1 import options_pb2

from server import errors, rest_errors
from server.auth.principal import Principal, current_principal
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
    errors.PayloadTooLarge: grpc.StatusCode.RESOURCE_EXHAUSTED,
    errors.Unavailable: grpc.StatusCode.UNAVAILABLE,
    errors.DeadlineExceeded: grpc.StatusCode.DEADLINE_EXCEEDED,
}

#: What the caller is told of anything unexpected (the detail goes to the log only): the
#: same text REST clients see for a hidden code.
INTERNAL_ERROR = rest_errors.INTERNAL_MESSAGE
#: What the caller is told when a request message's bytes are not valid protobuf.
MALFORMED_REQUEST = "the request message could not be parsed"
#: The longest message an error carries. Messages may hold text others chose (a device's
#: handler error, a name from a path); they travel as headers (grpc-message, and the REST
#: body in the trailers), and a header past the gateway's limit makes Envoy reset its whole
#: upstream connection: every other stream on it, other devices' links included.
MAX_MESSAGE_CHARS = 1024


def bounded(text: str) -> str:
    """`text`, cut to `MAX_MESSAGE_CHARS` (ending in an ellipsis when cut)."""
    if len(text) <= MAX_MESSAGE_CHARS:
        return text
    return text[: MAX_MESSAGE_CHARS - 1] + "\u2026"


def status_for(error: errors.ThingwireError) -> grpc.StatusCode:
    """The status code of a domain error, by its nearest mapped class (else INTERNAL)."""
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


class GuardedContext:
    """The servicer context of one guarded call: grpc's own, plus what errors need to know.

    It records whether the response headers (initial metadata) have gone out: after the
    first message of a stream they have, and grpc refuses to send them again, so an error
    can then travel only in the trailers. It also checks request messages read with
    `read()`. Everything else is grpc's context, unchanged.
    """

    def __init__(self, context: grpc.aio.ServicerContext, method: str) -> None:
        self._context = context
        #: The full method name, "/pkg.Service/Method".
        self.method = method
        self.headers_sent = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._context, name)

    async def send_initial_metadata(self, metadata: Iterable[tuple[str, str | bytes]]) -> None:
        self.headers_sent = True
        await self._context.send_initial_metadata(tuple(metadata))

    async def write(self, response: Any) -> None:
        self.headers_sent = True
        await self._context.write(response)

    async def read(self) -> Any:
        return _checked(await self._context.read())


async def abort_with(call: GuardedContext, error: errors.ThingwireError) -> NoReturn:
    """End the call with the error's status and message: the way every error leaves.

    The trailers also carry the REST answer of the rpc's API family (`server.rest_errors`:
    HTTP status and ready body) and, for a throttle, `retry-after`. Only trailers, so this
    works at any point of a stream; a unary REST call fails before sending anything, and
    then its trailers are its only headers, where the gateway finds them.
    """
    code = status_for(error)
    text = bounded(error.message)
    trailing = rest_errors.error_metadata(
        rest_errors.current_family.get(), code, text, error.http_status
    )
    if isinstance(error, errors.Throttled):
        trailing = (*trailing, ("retry-after", str(error.retry_after)))
    await call.abort(code, text, trailing)
    raise AssertionError("unreachable: abort raises")  # pragma: no cover


class Authenticates(Protocol):
    """What the interceptor needs of `server.auth.authenticator.Authenticator`."""

    async def authenticate(self, metadata: Mapping[str, str], access: int) -> Principal | None:
        """The caller for an rpc of this access level, or a domain error refusing it."""
        ...


#: Decides whether a call may run, and as whom; raises a domain error to refuse it.
Admission = Callable[[GuardedContext], Awaitable[Principal | None]]


class WrappedHandlers:
    """An interceptor's wrapped handler of each method, built on the method's first call.

    grpc hands an interceptor the same handler object for a method on every call, so its
    guarded copy is built once, not per call; a different handler (never seen in practice)
    is wrapped anew. Only served methods get here: the table holds one entry per rpc.
    """

    def __init__(self) -> None:
        self._by_method: dict[str, tuple[grpc.RpcMethodHandler, Any]] = {}

    def get(self, method: str, handler: grpc.RpcMethodHandler, wrap: Callable[[], Any]) -> Any:
        """The wrapped copy of `handler` for `method`, from `wrap` the first time."""
        known = self._by_method.get(method)
        if known is not None and known[0] is handler:
            return known[1]
        wrapped = wrap()
        self._by_method[method] = (handler, wrapped)
        return wrapped


class ServerInterceptor(grpc.aio.ServerInterceptor):
    """Admits every call by its method's access level and guards it (see the module doc).

    `levels` maps each of our methods to its Access; methods of `open_services` (health,
    reflection) need no credentials; any other method is refused with INTERNAL and logged,
    since only a method left out of the service table can get there.
    """

    def __init__(
        self,
        authenticator: Authenticates,
        levels: Mapping[str, int],
        open_services: Iterable[str] = (),
    ) -> None:
        self._authenticator = authenticator
        self._levels = levels
        self._open = frozenset(open_services)
        self._wrapped = WrappedHandlers()

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None:  # no such method: grpc answers UNIMPLEMENTED
            return None
        method: str = handler_call_details.method
        return self._wrapped.get(
            method, handler, lambda: _wrap(handler, method, self._admission(method))
        )

    def _admission(self, method: str) -> Admission:
        access = self._levels.get(method)
        if access is not None:
            return lambda call: self._authenticator.authenticate(metadata_of(call), access)
        if method.lstrip("/").partition("/")[0] in self._open:
            return _anyone
        return _refuse


async def _anyone(call: GuardedContext) -> None:
    return None


async def _refuse(call: GuardedContext) -> NoReturn:
    log.error(
        "refused %s: the method has no access level (its service is missing from the "
        "service table in server/app.py)",
        call.method,
    )
    raise errors.ThingwireError(INTERNAL_ERROR)


@contextlib.asynccontextmanager
async def _guarded(call: GuardedContext, admit: Admission) -> AsyncIterator[None]:
    """Admit the call, expose its principal, and turn any error into a status.

    Domain errors become their mapped code; anything unexpected is logged and becomes
    INTERNAL with a generic message, so no traceback or detail leaks to the caller.
    """
    try:
        token = current_principal.set(await admit(call))
        try:
            yield
        finally:
            # A stream's generator closed at shutdown (GeneratorExit) may run this in
            # another context than the one that set the token; that context ends anyway.
            with contextlib.suppress(ValueError):
                current_principal.reset(token)
    except errors.ThingwireError as error:
        await abort_with(call, error)
    except grpc.aio.AbortError:
        raise
    except Exception:
        log.exception("unexpected error in %s", call.method)
        await abort_with(call, errors.ThingwireError(INTERNAL_ERROR))


class _Malformed:
    """Stands in for a request message whose bytes are not valid protobuf."""


_MALFORMED = _Malformed()


def _tolerant(deserialize: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    """`deserialize`, answering `_MALFORMED` instead of raising on bad bytes.

    grpc deserializes a unary request before any handler runs and would answer UNKNOWN
    with the exception's class (and log a traceback); the guard answers INVALID_ARGUMENT.
    """
    if deserialize is None:
        return None

    def tolerant(data: bytes) -> Any:
        try:
            return deserialize(data)
        except message.DecodeError:
            return _MALFORMED

    return tolerant


def _checked(request: Any) -> Any:
    """The request, or InvalidArgument when its bytes did not parse."""
    if request is _MALFORMED:
        raise errors.InvalidArgument(MALFORMED_REQUEST)
    return request


async def _checked_stream(requests: AsyncIterator[Any]) -> AsyncIterator[Any]:
    async for request in requests:
        yield _checked(request)


async def _responses(result: Any, call: GuardedContext) -> AsyncIterator[Any]:
    """The messages of a streaming servicer, which either yields them or writes them."""
    if hasattr(result, "__aiter__"):
        async for response in result:
            call.headers_sent = True  # the first message takes the headers with it
            yield response
    else:
        await result  # it wrote with context.write


def _wrap(handler: grpc.RpcMethodHandler, method: str, admit: Admission) -> Any:
    """A copy of `handler` whose behaviour, of any of the four kinds, runs inside the guard."""
    streamed_requests = bool(handler.stream_unary or handler.stream_stream)
    check: Callable[[Any], Any] = _checked_stream if streamed_requests else _checked
    kinds = {
        "request_deserializer": _tolerant(handler.request_deserializer),
        "response_serializer": handler.response_serializer,
    }
    unary_inner = handler.unary_unary or handler.stream_unary
    if unary_inner:

        async def unary_response(request: Any, context: grpc.aio.ServicerContext) -> Any:
            call = GuardedContext(context, method)
            async with _guarded(call, admit):
                return await unary_inner(check(request), call)

        if streamed_requests:
            return grpc.stream_unary_rpc_method_handler(unary_response, **kinds)
        return grpc.unary_unary_rpc_method_handler(unary_response, **kinds)

    stream_inner = handler.unary_stream or handler.stream_stream

    async def streaming_response(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator:
        call = GuardedContext(context, method)
        async with _guarded(call, admit):
            async for response in _responses(stream_inner(check(request), call), call):
                yield response

    if streamed_requests:
        return grpc.stream_stream_rpc_method_handler(streaming_response, **kinds)
    return grpc.unary_stream_rpc_method_handler(streaming_response, **kinds)
