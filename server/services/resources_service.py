"""ResourceService: calls to a connected device's resources (docs/device-link.md, "Calling
resources").

Thin by design: check who may call, pick the input and the deadline, and hand the call to
`AppState.router`, the one seam every call to a device crosses. The link raises the domain
errors of a failed call (offline, unknown resource, throttled, deadline, device error).
"""

from __future__ import annotations

import grpc
import orjson
from google.protobuf import json_format, struct_pb2
from thingwire.agent.v1 import agent_pb2
from thingwire.resources.v1 import resources_pb2, resources_pb2_grpc

from server import errors
from server.auth.principal import Action, UserPrincipal, require_device_access, require_user
from server.link.link import DeviceKey, Resource
from server.rest_interceptor import ORIGINAL_PATH_KEY
from server.state import AppState

Kind = agent_pb2.ResourceKind

#: Thinger's io type of each kind (`fn` in its device API description).
THINGER_FN: dict[int, int] = {
    Kind.RESOURCE_KIND_NONE: 1,
    Kind.RESOURCE_KIND_INPUT: 2,
    Kind.RESOURCE_KIND_OUTPUT: 3,
    Kind.RESOURCE_KIND_INPUT_OUTPUT: 4,
}
#: The key that marks Thinger's wrapped body, `{"in": <value>}`.
WRAPPED_KEY = "in"
BOTH_INPUTS = "set either input or body, not both"
DEADLINE_PASSED = "the call's deadline has passed"
NOT_JSON = "the body is not valid JSON"


def kind_name(kind: int) -> str:
    """The kind's name for people: output, input, input_output or none."""
    return Kind.Name(kind).removeprefix("RESOURCE_KIND_").lower()


def unwrapped(body: object) -> object:
    """The input a REST body carries: "in" of an object whose only key is "in", else the
    body itself (docs/device-link.md, "Calling resources")."""
    if isinstance(body, dict) and list(body) == [WRAPPED_KEY]:
        return body[WRAPPED_KEY]
    return body


def parse_body(data: bytes) -> struct_pb2.Value | None:
    """The input of a raw REST body: None when it is empty, else its JSON value unwrapped.

    InvalidArgument for bytes that are not one JSON value (orjson is strict: no NaN, no
    trailing text) or nest deeper than a protobuf Value may.
    """
    if not data.strip():
        return None
    try:
        parsed = orjson.loads(data)
    except orjson.JSONDecodeError as error:
        raise errors.InvalidArgument(f"{NOT_JSON}: {error}") from None
    try:
        return json_format.ParseDict(unwrapped(parsed), struct_pb2.Value())
    except json_format.ParseError:
        raise errors.InvalidArgument(f"{NOT_JSON}: it nests too deeply") from None


def input_of(
    request: resources_pb2.CallResourceRequest, *, rest: bool = False
) -> struct_pb2.Value | None:
    """The call's input: `input` as it is (gRPC), or the REST `body` parsed and unwrapped;
    None if neither.

    Over REST only the body counts: `input` could be set there only from the query
    (`?input.x=1`, which the transcoder accepts), a form no Thinger client sends.
    """
    if rest:
        request.ClearField("input")
    has_body = bool(request.body.data)
    if request.HasField("input") and has_body:
        raise errors.InvalidArgument(BOTH_INPUTS)
    if request.HasField("input"):
        return request.input
    if has_body:
        return parse_body(request.body.data)
    return None


def _through_rest(context: grpc.aio.ServicerContext) -> bool:
    """Whether the call came through the gateway's transcoder (a REST call)."""
    return any(key == ORIGINAL_PATH_KEY for key, _value in context.invocation_metadata() or ())


def describe(resource: Resource) -> struct_pb2.Value:
    """One resource as Thinger's device API describes it, with our kind and description."""
    entry = struct_pb2.Value()
    fields = entry.struct_value.fields
    fields["fn"].number_value = THINGER_FN[resource.kind]
    fields["kind"].string_value = kind_name(resource.kind)
    fields["description"].string_value = resource.description
    if resource.example is not None:
        fields["example"].CopyFrom(resource.example)
    return entry


def authorize(
    principal: UserPrincipal, user_id: str, device_id: str, action: Action, resource: str | None
) -> DeviceKey:
    """The device the caller names, if it may `action` it; Unauthenticated otherwise.

    Checked before the device is looked for, so a refusal is the same whether or not the
    device exists (docs/device-link.md, "Who may call").
    """
    require_device_access(principal, user_id, action, device_id, resource)
    return DeviceKey(principal.user_id, device_id)


class ResourceService(resources_pb2_grpc.ResourceServiceServicer):
    """Implements thingwire.resources.v1.ResourceService."""

    def __init__(self, state: AppState) -> None:
        self._state = state

    async def GetResource(
        self, request: resources_pb2.GetResourceRequest, context: grpc.aio.ServicerContext
    ) -> resources_pb2.GetResourceResponse:
        key = authorize(
            require_user(), request.user_id, request.device_id, Action.CALL, request.resource
        )
        out = await self._invoke(key, request.resource, None, context)
        return resources_pb2.GetResourceResponse(out=out)

    async def CallResource(
        self, request: resources_pb2.CallResourceRequest, context: grpc.aio.ServicerContext
    ) -> resources_pb2.CallResourceResponse:
        key = authorize(
            require_user(), request.user_id, request.device_id, Action.CALL, request.resource
        )
        value = input_of(request, rest=_through_rest(context))
        out = await self._invoke(key, request.resource, value, context)
        return resources_pb2.CallResourceResponse(out=out)

    async def DescribeResources(
        self, request: resources_pb2.DescribeResourcesRequest, context: grpc.aio.ServicerContext
    ) -> struct_pb2.Struct:
        principal = require_user()
        key = authorize(principal, request.user_id, request.device_id, Action.READ, None)
        described = struct_pb2.Struct()
        for resource in await self._state.router.resources(key):
            # A credential limited to some resources is shown only those.
            if principal.allows(Action.READ, key.device_id, resource.name):
                described.fields[resource.name].CopyFrom(describe(resource))
        return described

    async def _invoke(
        self,
        key: DeviceKey,
        resource: str,
        value: struct_pb2.Value | None,
        context: grpc.aio.ServicerContext,
    ) -> struct_pb2.Value | None:
        """Run the call within its deadline: the server's default, or the caller's if shorter.

        A caller that goes away cancels this coroutine, and the link cancels the call on
        the device.
        """
        seconds = call_deadline(self._state.link_limits.call_timeout_s, context)
        return await self._state.router.invoke(key, resource, value, seconds)


def call_deadline(default_s: float, context: grpc.aio.ServicerContext) -> float:
    """Seconds a call to a device may take: the server's default, or the caller's deadline
    if it is shorter; DeadlineExceeded when the caller's has passed already."""
    remaining = context.time_remaining()
    if remaining is None:
        return default_s
    if remaining <= 0:
        raise errors.DeadlineExceeded(DEADLINE_PASSED)
    return min(default_s, remaining)


__all__ = [
    "ResourceService",
    "authorize",
    "call_deadline",
    "describe",
    "input_of",
    "parse_body",
    "unwrapped",
]
