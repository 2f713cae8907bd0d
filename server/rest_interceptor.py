"""Applies each rpc's REST options: its API family (for error bodies), its success status,
and its path-bound fields.

The first two are method options in proto/ (`thingwire.options.v1.api_family`,
`http_status`), read from the descriptors like the access level. This interceptor runs
outside the auth interceptor, so every error of the call, authentication included, is
rendered for the rpc's family by `server.interceptors.abort_with`.

The path wins: a field the rpc's `google.api.http` template binds from the path is set
again from the REST path (`x-envoy-original-path`) before the call runs, so that neither
the query (however its name is percent-encoded) nor the JSON body can change it.
`DELETE /auth/api_tokens/5?i%64=11` deletes token 5, and `{"user_id":"bob"}` posted to
/v1/users/alice/tokens is alice's request.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

import grpc
from google.api import annotations_pb2
from google.protobuf import descriptor, message
from thingwire.options.v1 import options_pb2

from gateway.http_rules import PathTemplate, bindings
from server.interceptors import WrappedHandlers
from server.rest_errors import HTTP_STATUS_KEY, current_family

#: How many REST paths' bound values are remembered (`path_values`).
PATH_CACHE_SIZE = 4096
#: The longest path remembered. The count alone bounds no memory: a path may have up to
#: the gateway's URI limit (8 KiB), and any caller chooses it before it is authenticated;
#: a device's calls, the paths that repeat, are far shorter.
MAX_REMEMBERED_PATH = 256
#: Where Envoy's transcoder keeps the REST path after rewriting `:path` to the gRPC one.
ORIGINAL_PATH_KEY = "x-envoy-original-path"

_INTEGERS = frozenset(
    {
        descriptor.FieldDescriptor.CPPTYPE_INT32,
        descriptor.FieldDescriptor.CPPTYPE_INT64,
        descriptor.FieldDescriptor.CPPTYPE_UINT32,
        descriptor.FieldDescriptor.CPPTYPE_UINT64,
    }
)


@dataclass(frozen=True)
class RestOptions:
    """The REST face of one rpc."""

    family: int = options_pb2.API_FAMILY_UNSPECIFIED
    #: The HTTP status of a successful answer; 0 means the transcoder's 200.
    success_status: int = 0
    #: The rpc's REST path templates; the fields they bind are re-bound from the path.
    paths: tuple[PathTemplate, ...] = ()


def rest_options(method: descriptor.MethodDescriptor) -> RestOptions:
    """The REST options declared on one rpc."""
    options = method.GetOptions()
    declared = options.Extensions
    templates: list[PathTemplate] = []
    if options.HasExtension(annotations_pb2.http):
        templates = [
            PathTemplate(template)
            for _verb, template, _body in bindings(declared[annotations_pb2.http])
        ]
    paths = tuple(template for template in templates if template.fields)
    return RestOptions(
        family=declared[options_pb2.api_family],
        success_status=declared[options_pb2.http_status],
        paths=paths,
    )


def bind_path(
    request: message.Message, metadata: Iterable[tuple[str, Any]], options: RestOptions
) -> None:
    """Set `request`'s path-bound fields from the REST path the call arrived on: the path
    wins over the query and the body.

    The path is only believed from `x-envoy-original-path`, which the gateway's transcoder
    sets; a caller of the gRPC port may send that header itself, which is harmless: such a
    caller sets every field of its request directly anyway. A call without it (native gRPC),
    or whose path is not one of the rpc's templates, is left as it is, and so is a request
    whose bytes did not parse (the guard inside answers it INVALID_ARGUMENT).
    """
    if not options.paths or not isinstance(request, message.Message):
        return
    path = next((value for key, value in metadata if key == ORIGINAL_PATH_KEY), None)
    if not isinstance(path, str):
        return
    path = path.split("?", 1)[0]
    if len(path) <= MAX_REMEMBERED_PATH:
        values = path_values(options.paths, path)
    else:
        values = _bound_values(options.paths, path)
    for field, value in values:
        _assign(request, field, value)


@functools.lru_cache(maxsize=PATH_CACHE_SIZE)
def path_values(paths: tuple[PathTemplate, ...], path: str) -> tuple[tuple[str, str], ...]:
    """The fields the first of `paths` that matches `path` binds, with their values (none
    when no template matches). Remembered per path: a device's calls repeat theirs."""
    return _bound_values(paths, path)


def _bound_values(paths: tuple[PathTemplate, ...], path: str) -> tuple[tuple[str, str], ...]:
    for template in paths:
        values = template.bind(path)
        if values is not None:
            return tuple(values.items())
    return ()


def _assign(request: message.Message, dotted: str, value: str) -> None:
    """Set the (possibly nested) field `dotted` to the path's text, converted as the
    transcoder converts it; a value it would have refused is left alone (never reached)."""
    *parents, name = dotted.split(".")
    target = request
    for parent in parents:
        target = getattr(target, parent)
    field = target.DESCRIPTOR.fields_by_name[name]
    if field.cpp_type == descriptor.FieldDescriptor.CPPTYPE_STRING:
        setattr(target, name, value)
    elif field.cpp_type in _INTEGERS:
        try:
            setattr(target, name, int(value))
        except ValueError:
            return


def rest_options_of(services: Iterable[descriptor.ServiceDescriptor]) -> dict[str, RestOptions]:
    """Map "/pkg.Service/Method" to its REST options, for every rpc of `services`."""
    return {
        f"/{service.full_name}/{method.name}": rest_options(method)
        for service in services
        for method in service.methods
    }


class RestInterceptor(grpc.aio.ServerInterceptor):
    """Makes an rpc's API family known to the error path and sends its success status.

    Methods outside `options` (health, reflection) pass through untouched.
    """

    def __init__(self, options: dict[str, RestOptions]) -> None:
        self._options = options
        self._wrapped = WrappedHandlers()

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        options = self._options.get(handler_call_details.method)
        if handler is None or options is None or not (options.family or options.paths):
            return handler
        return self._wrapped.get(
            handler_call_details.method, handler, lambda: _wrap(handler, options)
        )


def _wrap(handler: grpc.RpcMethodHandler, options: RestOptions) -> Any:
    """A copy of `handler` that runs with the rpc's family set (and answers its status)."""
    serializers = {
        "request_deserializer": handler.request_deserializer,
        "response_serializer": handler.response_serializer,
    }
    success = ((HTTP_STATUS_KEY, str(options.success_status)),) if options.success_status else ()
    if handler.unary_unary or handler.stream_unary:
        inner = handler.unary_unary or handler.stream_unary

        async def unary_response(request: Any, context: grpc.aio.ServicerContext) -> Any:
            current_family.set(options.family)
            if handler.unary_unary:
                bind_path(request, context.invocation_metadata() or (), options)
            response = await inner(request, context)
            if success:
                # Only once the rpc succeeded: an error keeps the status of its code.
                await context.send_initial_metadata(success)
            return response

        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(unary_response, **serializers)
        return grpc.stream_unary_rpc_method_handler(unary_response, **serializers)

    inner_stream = handler.unary_stream or handler.stream_stream

    async def streaming_response(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator:
        current_family.set(options.family)
        if handler.unary_stream:
            bind_path(request, context.invocation_metadata() or (), options)
        async for item in inner_stream(request, context):
            yield item

    if handler.unary_stream:
        return grpc.unary_stream_rpc_method_handler(streaming_response, **serializers)
    return grpc.stream_stream_rpc_method_handler(streaming_response, **serializers)


__all__ = ["RestInterceptor", "RestOptions", "bind_path", "rest_options", "rest_options_of"]
