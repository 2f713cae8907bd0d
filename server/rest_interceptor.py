"""Applies each rpc's REST options: its API family (for error bodies) and its success status.

Both are method options in proto/ (`thingwire.options.v1.api_family`, `http_status`), read
from the descriptors like the access level. This interceptor runs outside the auth
interceptor, so every error of the call, authentication included, is rendered for the
rpc's family by `server.interceptors.abort_with`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf import descriptor
from thingwire.options.v1 import options_pb2

from server.rest_errors import HTTP_STATUS_KEY, current_family


@dataclass(frozen=True)
class RestOptions:
    """The REST face of one rpc."""

    family: int = options_pb2.API_FAMILY_UNSPECIFIED
    #: The HTTP status of a successful answer; 0 means the transcoder's 200.
    success_status: int = 0


def rest_options(method: descriptor.MethodDescriptor) -> RestOptions:
    """The REST options declared on one rpc."""
    declared = method.GetOptions().Extensions
    return RestOptions(
        family=declared[options_pb2.api_family], success_status=declared[options_pb2.http_status]
    )


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

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        options = self._options.get(handler_call_details.method)
        if handler is None or options is None or not options.family:
            return handler
        return _wrap(handler, options)


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
        async for item in inner_stream(request, context):
            yield item

    if handler.unary_stream:
        return grpc.unary_stream_rpc_method_handler(streaming_response, **serializers)
    return grpc.stream_stream_rpc_method_handler(streaming_response, **serializers)


__all__ = ["RestInterceptor", "RestOptions", "rest_options", "rest_options_of"]
