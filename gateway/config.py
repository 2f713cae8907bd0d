"""Renders the Envoy bootstrap that puts REST/JSON and gRPC on one port in front of thingwire.

The config is built as plain dicts from a small frozen `GatewaySpec` and dumped as JSON
(Envoy reads JSON with `--config-path x.json`), so nothing but the standard library is needed
and a test can assert on the structure instead of on text. Every choice below that is not an
Envoy default was verified with Envoy 1.40 (see docs/design.md, "Gateway facts", and
docs/architecture.md, "Envoy 1.40 behaviours found while building the gateway").
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from google.api import annotations_pb2
from google.protobuf import descriptor_pb2
from thingwire.options.v1 import options_pb2

from gateway import local_replies
from gateway.http_rules import HttpRule, http_rules
from gateway.local_replies import SHAPED_HEADER
from server.rest_errors import HTTP_STATUS_BY_CODE, INTERNAL_MESSAGE, reason, render_error_body

MIB = 1024 * 1024

#: The package of the AutoPi Local API, served by the device gateway; every other package's
#: services with HTTP rules are the cloud gateway's.
DEVICE_PACKAGE = "thingwire.local.v1"

#: Native gRPC: exactly application/grpc, or application/grpc+ and anything, in lower case:
#: Envoy's own gRPC test, which the transcoder applies. This one regex picks the gRPC
#: route, and the Lua filter is off on that route, so routing and filtering cannot
#: disagree; nor may the route disagree with the transcoder. Envoy's test is
#: case-sensitive, so "application/GRPC" is transcoded as REST and takes a REST route
#: (with the Lua filter, the buffer limit and the REST timeouts); so do grpc-web and the
#: like, "application/grpc;x" and "application/grpc ;x".
NATIVE_GRPC_CONTENT_TYPE = r"^application/grpc(\+.*)?$"

UPSTREAM_CLUSTER = "thingwire_grpc"

#: Set before routing to the downstream protocol (`%PROTOCOL%`), replacing whatever the
#: client sent, and removed before any request leaves Envoy: the gRPC route matches only
#: "HTTP/2", since no route matcher reads the protocol itself.
PROTOCOL_HEADER = "x-thingwire-protocol"
#: The internal listener (and its cluster) that answers a gRPC content type over HTTP/1.
#: Envoy's own replies to a request with a gRPC content type are always in gRPC form (HTTP
#: 200, grpc-status), whatever filter or route makes them; an answer from an upstream is
#: not, so the refusal comes from this listener, reached in memory (docs/architecture.md).
REFUSAL_LISTENER = "thingwire_refusals"
#: The status and message a REST client gets for a gRPC content type over HTTP/1.
GRPC_OVER_HTTP1_STATUS = 415
GRPC_OVER_HTTP1_MESSAGE = (
    "unsupported media type: application/grpc needs HTTP/2; REST requests send JSON"
)

#: The server learns the client's address from x-forwarded-for, set here to the peer Envoy
#: accepted the connection from, replacing whatever the client sent. (Envoy's own append
#: would do for a remote peer, but for a loopback peer it appends the host's first
#: non-loopback address instead, so every local client looked like one machine.)
CLIENT_ADDRESS_HEADER: dict[str, Any] = {
    "header": {"key": "x-forwarded-for", "value": "%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%"},
    "append_action": "OVERWRITE_IF_EXISTS_OR_ADD",
}

#: The Host the client named, for an upstream that checks it (the device's Local API refuses
#: names that are not the device's: docs/device-side.md, "Access"). Set here, replacing
#: whatever a client sent under that name.
HOST_HEADER = "x-thingwire-host"
ORIGINAL_HOST_HEADER: dict[str, Any] = {
    "header": {"key": HOST_HEADER, "value": "%REQ(:AUTHORITY)%"},
    "append_action": "OVERWRITE_IF_EXISTS_OR_ADD",
}

#: The Lua filter's name; route metadata for it is what `handle:metadata()` reads.
LUA_FILTER = "envoy.filters.http.lua"

#: The request header the Lua filter sets on a request it refuses, so that the local reply
#: keeps the filter's message; the filter removes it from every incoming request.
LUA_REJECT_HEADER = "x-thingwire-reject"
#: Set on the transcoder's own 400s, whose message the Lua filter completes.
TRANSCODER_HEADER = "x-thingwire-transcoder-error"
#: The prefix of the transcoder's 400 messages in the body local_reply_config renders.
NOT_JSON = "request body is not valid JSON: "


@dataclass(frozen=True)
class ErrorRule:
    """Requests whose path starts with `prefix` belong to API `family` (an `ApiFamily`).

    Only Envoy's own replies need this (an unknown path has no rpc to ask); an rpc's errors
    carry its family from its `api_family` option, and a test checks that both agree.
    """

    prefix: str
    family: int


#: Families of the cloud gateway's paths, first match wins; anything else is AutoPi cloud.
CLOUD_ERROR_RULES: tuple[ErrorRule, ...] = (
    ErrorRule("/v1/", options_pb2.API_FAMILY_THINGER),
    ErrorRule("/v2/", options_pb2.API_FAMILY_THINGER),
    ErrorRule("/oauth/", options_pb2.API_FAMILY_THINGER),
    ErrorRule("/api/external/", options_pb2.API_FAMILY_DATACOOEE),
)


@dataclass(frozen=True)
class GatewaySpec:
    """Everything that varies between gateways; `render_config` turns it into a bootstrap.

    Ports are never 0: the operator contract makes every port explicit so that several
    stacks can run side by side and tests can pick free ones.
    """

    name: str
    listen_port: int
    admin_port: int
    upstream_port: int
    descriptor: Path
    services: tuple[str, ...]
    error_rules: tuple[ErrorRule, ...] = ()
    default_family: int = options_pb2.API_FAMILY_AUTOPI
    listen_host: str = "0.0.0.0"  # noqa: S104 - the gateway is the public face
    upstream_host: str = "127.0.0.1"
    #: When set, Envoy reaches the upstream over this Unix socket instead of host:port; the
    #: server believes x-forwarded-for only on calls that arrive there.
    upstream_socket: Path | None = None
    #: Further upstreams beside `upstream_socket`: the other replicas of `thingwire serve
    #: --replicas N` (docs/architecture.md, "Scale-out"). Envoy balances calls over all of
    #: them and retries a connection one refuses on another.
    more_upstream_sockets: tuple[Path, ...] = ()
    #: Tell the upstream the Host the client named (`HOST_HEADER`).
    forward_host: bool = False
    max_request_body_bytes: int = 8 * MIB
    max_response_body_bytes: int = 64 * MIB
    #: Request line plus headers; more is a 431 here rather than the server's 429.
    max_request_headers_kb: int = 16
    #: Path plus query; more is a 414 here rather than the server's 429.
    max_uri_bytes: int = 8192
    #: Deadline of a unary REST call; gRPC calls use their own grpc-timeout instead.
    unary_timeout_s: float = 60.0
    #: Time for a client to send all request headers (every route, device links too).
    request_headers_timeout_s: float = 10.0
    #: Time for a REST client to send its whole request; with unary_timeout_s, the longest
    #: a REST exchange may last.
    request_timeout_s: float = 30.0
    #: A REST stream with nothing received or sent for this long is closed.
    rest_idle_timeout_s: float = 30.0
    connect_timeout_s: float = 5.0
    max_downstream_connections: int = 100_000
    #: HTTP/2 PING period on both sides of Envoy (devices and SSE clients downstream, the
    #: server upstream); a peer that leaves a PING unanswered for `keepalive_timeout_s` is
    #: cut, so a dead link is noticed within about the sum (docs/device-link.md).
    keepalive_interval_s: float = 10.0
    keepalive_timeout_s: float = 10.0

    def __post_init__(self) -> None:
        for label in ("listen_port", "admin_port", "upstream_port"):
            port = getattr(self, label)
            if not 1 <= port <= 65535:
                raise ValueError(f"{label} must be in 1..65535, got {port}")
        if self.listen_port == self.admin_port:
            raise ValueError("listen_port and admin_port must differ")
        if self.max_request_body_bytes <= 0 or self.max_response_body_bytes <= 0:
            raise ValueError("body size limits must be positive")
        if self.max_uri_bytes >= self.max_request_headers_kb * 1024:
            raise ValueError("max_uri_bytes must be below max_request_headers_kb")
        if self.keepalive_interval_s <= 0 or self.keepalive_timeout_s <= 0:
            raise ValueError("keepalive interval and timeout must be positive")


def transcoded_services(descriptor: Path, *, device: bool) -> tuple[str, ...]:
    """The services of the descriptor set that have `google.api.http` rules, for one gateway.

    Read from the same image Envoy loads, so the protos stay the one list of what REST
    exposes: a new service with HTTP rules is transcoded without being named anywhere else.
    Services without rules (the device link's stream) are left to gRPC passthrough.
    """
    image = descriptor_pb2.FileDescriptorSet.FromString(Path(descriptor).read_bytes())
    names = [
        f"{proto_file.package}.{service.name}"
        for proto_file in image.file
        if proto_file.package.startswith("thingwire.")
        and (proto_file.package == DEVICE_PACKAGE) == device
        for service in proto_file.service
        if any(method.options.HasExtension(annotations_pb2.http) for method in service.method)
    ]
    return tuple(sorted(names))


def cloud_spec(
    http_port: int,
    grpc_port: int,
    admin_port: int,
    descriptor: Path,
    **overrides: Any,
) -> GatewaySpec:
    """The cloud gateway: AutoPi cloud, Thinger and Datacooee REST in front of the server.

    `overrides` replace any other `GatewaySpec` field (tests bind to loopback, for example).
    """
    defaults: dict[str, Any] = {
        "name": "cloud",
        "services": transcoded_services(descriptor, device=False),
        "error_rules": CLOUD_ERROR_RULES,
        "default_family": options_pb2.API_FAMILY_AUTOPI,
    }
    return GatewaySpec(
        listen_port=http_port,
        admin_port=admin_port,
        upstream_port=grpc_port,
        descriptor=Path(descriptor),
        **{**defaults, **overrides},
    )


def device_spec(
    local_port: int,
    agent_grpc_port: int,
    admin_port: int,
    descriptor: Path,
    **overrides: Any,
) -> GatewaySpec:
    """The device gateway: the AutoPi Local API (`{"error": "..."}`) in front of the agent.

    It transcodes the LocalService (`proto/thingwire/local/v1/local.proto`), which the agent
    serves on a Unix socket (`upstream_socket`; docs/device-side.md).
    """
    defaults: dict[str, Any] = {
        "name": "device",
        "services": transcoded_services(descriptor, device=True),
        "forward_host": True,
        "error_rules": (),
        "default_family": options_pb2.API_FAMILY_LOCAL,
    }
    return GatewaySpec(
        listen_port=local_port,
        admin_port=admin_port,
        upstream_port=agent_grpc_port,
        descriptor=Path(descriptor),
        **{**defaults, **overrides},
    )


def lua_source(spec: GatewaySpec) -> str:
    """The Lua filter with this gateway's settings prepended as a `CONFIG` table.

    Envoy's Lua filter takes no parameters, so the per-gateway facts are written into the
    script itself.
    """
    settings: dict[str, str | int] = {
        "max_uri_bytes": spec.max_uri_bytes,
        "reject_header": LUA_REJECT_HEADER,
        "shaped_header": SHAPED_HEADER,
        "transcoder_header": TRANSCODER_HEADER,
        "not_json": NOT_JSON,
    }
    fields = "".join(f"  {key} = {_lua_value(value)},\n" for key, value in settings.items())
    preamble = (
        f"-- Generated by gateway/config.py for the {spec.name} gateway; the filter follows.\n"
        f"local CONFIG = {{\n{fields}}}\n"
    )
    script = resources.files("gateway").joinpath("filters.lua").read_text(encoding="utf-8")
    return preamble + script


def _lua_value(value: str | int) -> str:
    """A Lua literal; JSON escapes are valid Lua escapes for what we write."""
    return json.dumps(value)


def _duration(seconds: float) -> str:
    """A protobuf Duration in JSON form."""
    return f"{seconds:g}s"


def _socket(host: str, port: int) -> dict[str, Any]:
    return {"socket_address": {"address": host, "port_value": port}}


def transcoder_config(
    spec: GatewaySpec, *, sse: bool = False, services: tuple[str, ...] | None = None
) -> dict[str, Any]:
    """The grpc_json_transcoder settings; `sse` gives the per-route variant for event streams.

    A per-route transcoder config replaces the listener's whole, so both come from here.
    `services` defaults to the listener's: every service except those that only stream,
    which are transcoded on their own SSE routes (`event_stream_services`).
    """
    print_options: dict[str, Any] = {
        "preserve_proto_field_names": True,
        "always_print_primitive_fields": True,
    }
    if sse:
        print_options["stream_sse_style_delimited"] = True
    return {
        "@type": "type.googleapis.com/"
        "envoy.extensions.filters.http.grpc_json_transcoder.v3.GrpcJsonTranscoder",
        "proto_descriptor": str(spec.descriptor),
        "services": list(services if services is not None else _listener_services(spec)),
        "print_options": print_options,
        "convert_grpc_status": True,
        "ignore_unknown_query_parameters": True,
        # A query parameter or the body may name a field the path binds; the server re-binds
        # those fields from the path (server/rest_interceptor.py), whatever the encoding.
        # Keep the REST route (and its timeout) after the path is rewritten to the gRPC one;
        # otherwise the request would be re-routed as native gRPC.
        "match_incoming_request_route": True,
        "request_validation_options": {
            "reject_unknown_method": True,
            "reject_unknown_query_parameters": False,
        },
        "max_request_body_size": spec.max_request_body_bytes,
        "max_response_body_size": spec.max_response_body_bytes,
    }


def _rules(spec: GatewaySpec) -> tuple[HttpRule, ...]:
    return http_rules(spec.descriptor, spec.services)


def _service_of(rule: HttpRule) -> str:
    return rule.rpc.split("/")[1]


def event_stream_services(rules: tuple[HttpRule, ...]) -> frozenset[str]:
    """The services all of whose REST rules stream (server-streaming rpcs, sent as SSE).

    They are transcoded only on their SSE routes: such a service may bind the path of a
    unary rpc (`GET …/stats` as JSON and as events), and one transcoder refuses to bind two
    rpcs to one path.
    """
    streaming: dict[str, bool] = {}
    for rule in rules:
        service = _service_of(rule)
        streaming[service] = streaming.get(service, True) and rule.server_streaming
    return frozenset(service for service, only in streaming.items() if only)


def _listener_services(spec: GatewaySpec) -> tuple[str, ...]:
    streams = event_stream_services(_rules(spec))
    return tuple(service for service in spec.services if service not in streams)


#: Requests for Server-Sent Events say so; the transcoder itself ignores Accept.
EVENT_STREAM_ACCEPT: dict[str, Any] = {
    "name": "accept",
    "string_match": {"contains": "text/event-stream", "ignore_case": True},
}


def _fallback_metadata(family: int) -> dict[str, Any]:
    """Route metadata for the Lua filter: the family's body for each status an error without
    a ready body (grpc's own, such as UNIMPLEMENTED) can have. Never the server's message."""
    bodies = {
        str(status): render_error_body(
            family, status, INTERNAL_MESSAGE if status == 500 else reason(status)
        )
        for status in sorted(set(HTTP_STATUS_BY_CODE.values()))
        if status >= 400
    }
    return {"filter_metadata": {LUA_FILTER: {"fallback": bodies}}}


def _rest_route(spec: GatewaySpec, name: str, match: dict[str, Any], family: int) -> dict[str, Any]:
    return {
        "name": name,
        "match": match,
        "route": {
            "cluster": UPSTREAM_CLUSTER,
            "timeout": _duration(spec.unary_timeout_s),
            # A stalled request is cut; a trickled one meets the connection manager's
            # max_stream_duration. (A max_stream_duration on this route would switch the
            # transcoded call to grpc-timeout deadlines: Envoy 1.40 then ignored `timeout`.)
            "idle_timeout": _duration(spec.rest_idle_timeout_s),
        },
        "metadata": _fallback_metadata(family),
    }


#: The request's content type is native gRPC (the one test; see NATIVE_GRPC_CONTENT_TYPE).
NATIVE_GRPC_MATCH: dict[str, Any] = {
    "name": "content-type",
    "string_match": {"safe_regex": {"regex": NATIVE_GRPC_CONTENT_TYPE}},
}
#: What `%PROTOCOL%` says of an h2c or h2 connection.
HTTP2: dict[str, Any] = {"exact": "HTTP/2"}


def _without_buffer_and_lua() -> dict[str, Any]:
    """Per-route config that switches off the buffer and the Lua filter (REST's two)."""
    return {
        "envoy.filters.http.buffer": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.buffer.v3.BufferPerRoute",
            "disabled": True,
        },
        LUA_FILTER: {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.lua.v3.LuaPerRoute",
            "disabled": True,
        },
    }


def _grpc_over_http1_route(spec: GatewaySpec) -> dict[str, Any]:
    """A gRPC content type over HTTP/1 (which cannot carry gRPC) goes to the refusal
    listener, without its content type so that listener's answer is plain HTTP: a 415 in
    the path's family shape, never a 200 with grpc-status (docs/architecture.md)."""
    return {
        "name": "grpc over HTTP/1",
        "match": {"prefix": "/", "headers": [NATIVE_GRPC_MATCH]},
        "route": {"cluster": REFUSAL_LISTENER, "timeout": _duration(spec.unary_timeout_s)},
        "request_headers_to_remove": ["content-type"],
        # The answer is the gateway's own, not a server's: no upstream timing.
        "response_headers_to_remove": ["x-envoy-upstream-service-time"],
        # Nothing to buffer or to check: the answer does not depend on the request; and the
        # Lua filter's refusals would be local replies, hence in gRPC form.
        "typed_per_filter_config": _without_buffer_and_lua(),
    }


def _refusal_routes(spec: GatewaySpec) -> list[dict[str, Any]]:
    """The refusal listener's routes: the 415 body of each family, by path prefix."""
    body = {
        family.family: render_error_body(
            family.family, GRPC_OVER_HTTP1_STATUS, GRPC_OVER_HTTP1_MESSAGE
        )
        for family in _families(spec)
    }
    routes = [
        (f"refuse {prefix}", prefix, body[family.family])
        for family in _families(spec)
        for prefix in family.prefixes
    ]
    routes.append(("refuse", "/", body[spec.default_family]))
    return [
        {
            "name": name,
            "match": {"prefix": prefix},
            "direct_response": {
                "status": GRPC_OVER_HTTP1_STATUS,
                "body": {"inline_string": text},
            },
            "response_headers_to_add": [
                {
                    "header": {"key": "content-type", "value": "application/json"},
                    "append_action": "OVERWRITE_IF_EXISTS_OR_ADD",
                }
            ],
        }
        for name, prefix, text in routes
    ]


def _refusal_listener(spec: GatewaySpec) -> dict[str, Any]:
    """An internal listener (reached only from this Envoy, in memory) that answers every
    request with the 415 of its path's family."""
    manager = {
        "@type": "type.googleapis.com/"
        "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": f"thingwire_{spec.name}_refusals",
        "route_config": {
            "name": "refusals",
            "virtual_hosts": [{"name": "all", "domains": ["*"], "routes": _refusal_routes(spec)}],
        },
        "http_filters": [
            {
                "name": "envoy.filters.http.router",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
                },
            }
        ],
    }
    return {
        "name": REFUSAL_LISTENER,
        "internal_listener": {},
        "filter_chains": [
            {
                "filters": [
                    {
                        "name": "envoy.filters.network.http_connection_manager",
                        "typed_config": manager,
                    }
                ]
            }
        ],
    }


def _refusal_cluster(spec: GatewaySpec) -> dict[str, Any]:
    address = {"envoy_internal_address": {"server_listener_name": REFUSAL_LISTENER}}
    return {
        "name": REFUSAL_LISTENER,
        "type": "STATIC",
        "connect_timeout": _duration(spec.connect_timeout_s),
        "load_assignment": {
            "cluster_name": REFUSAL_LISTENER,
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": address}}]}],
        },
    }


def _routes(spec: GatewaySpec) -> list[dict[str, Any]]:
    """Native gRPC first (no deadline but its own), then SSE streams, then REST by family."""
    routes: list[dict[str, Any]] = [
        {
            "name": "grpc",
            "match": {
                "prefix": "/",
                "headers": [NATIVE_GRPC_MATCH, {"name": PROTOCOL_HEADER, "string_match": HTTP2}],
            },
            "route": {
                "cluster": UPSTREAM_CLUSTER,
                # Device links are long-lived streams: no route deadline, no idle cut-off;
                # a unary gRPC call's deadline is the client's grpc-timeout.
                "timeout": "0s",
                "idle_timeout": "0s",
                "max_stream_duration": {
                    "max_stream_duration": "0s",
                    "grpc_timeout_header_max": "0s",
                },
            },
            # gRPC streams are not buffered (the gRPC server enforces its own limit), and
            # the Lua filter is REST's: off here, so this route's match is the one
            # classification of native gRPC.
            "typed_per_filter_config": _without_buffer_and_lua(),
        },
        _grpc_over_http1_route(spec),
    ]
    rules = _rules(spec)
    unary = {(rule.method, rule.template) for rule in rules if not rule.server_streaming}
    for rule in rules:
        if not rule.server_streaming:
            continue
        headers: list[dict[str, Any]] = [
            {"name": ":method", "string_match": {"exact": rule.method}}
        ]
        if (rule.method, rule.template) in unary:
            # The same path answers JSON too: only an event-stream request takes this route.
            headers.append(EVENT_STREAM_ACCEPT)
        routes.append(
            {
                "name": f"sse {rule.method} {rule.template}",
                "match": {"safe_regex": {"regex": rule.path_regex}, "headers": headers},
                "route": {
                    "cluster": UPSTREAM_CLUSTER,
                    # An event stream lives as long as its client: no deadline, no idle
                    # cut-off (HTTP/2 keepalive and the stream's frames keep it honest).
                    "timeout": "0s",
                    "idle_timeout": "0s",
                    "max_stream_duration": {"max_stream_duration": "0s"},
                },
                "typed_per_filter_config": {
                    "envoy.filters.http.grpc_json_transcoder": transcoder_config(
                        spec, sse=True, services=(_service_of(rule),)
                    )
                },
                "metadata": _fallback_metadata(rule.family or spec.default_family),
            }
        )
    for error_rule in spec.error_rules:
        routes.append(
            _rest_route(
                spec, f"rest {error_rule.prefix}", {"prefix": error_rule.prefix}, error_rule.family
            )
        )
    routes.append(_rest_route(spec, "rest", {"prefix": "/"}, spec.default_family))
    return routes


def _families(spec: GatewaySpec) -> list[local_replies.Family]:
    """The spec's path families in match order, the default last."""
    families: dict[int, list[str]] = {}
    for error_rule in spec.error_rules:
        families.setdefault(error_rule.family, []).append(error_rule.prefix)
    return [
        *(local_replies.Family(family, tuple(prefixes)) for family, prefixes in families.items()),
        local_replies.Family(spec.default_family),
    ]


def _http_connection_manager(spec: GatewaySpec) -> dict[str, Any]:
    lua = {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua",
        "default_source_code": {"inline_string": lua_source(spec)},
    }
    return {
        "@type": "type.googleapis.com/"
        "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": f"thingwire_{spec.name}",
        # HTTP/1.1 REST and h2c gRPC on the same port.
        "codec_type": "AUTO",
        # Envoy is the edge: its peer is the client (xff_num_trusted_hops stays 0).
        "use_remote_address": True,
        # Before routing: the downstream protocol, which the gRPC route requires to be HTTP/2.
        "early_header_mutation_extensions": [
            {
                "name": "envoy.http.early_header_mutation.header_mutation",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.http.early_header_mutation."
                    "header_mutation.v3.HeaderMutation",
                    "mutations": [
                        {
                            "append": {
                                "header": {"key": PROTOCOL_HEADER, "value": "%PROTOCOL%"},
                                "append_action": "OVERWRITE_IF_EXISTS_OR_ADD",
                            }
                        }
                    ],
                },
            }
        ],
        # Devices keep one stream for hours: PINGs tell a dead peer (a device gone without
        # closing, a dropped TCP path) from a quiet one; no PING answer in time ends the
        # connection, and with it the device's link upstream.
        "http2_protocol_options": {
            "max_concurrent_streams": 1024,
            "connection_keepalive": _keepalive(spec),
        },
        # Bigger headers are a 431 here, before the server's metadata limit would refuse
        # them with a 429 that clients retry.
        "max_request_headers_kb": spec.max_request_headers_kb,
        # Every stream must finish its headers in time; after that each route has its own
        # bounds (REST: idle and total; gRPC and SSE streams: none, they live for hours).
        "request_headers_timeout": _duration(spec.request_headers_timeout_s),
        # The longest a REST exchange may take, trickled body included; the gRPC and SSE
        # routes turn it off (max_stream_duration 0s) for their long-lived streams.
        "common_http_protocol_options": {
            "max_stream_duration": _duration(spec.request_timeout_s + spec.unary_timeout_s)
        },
        "local_reply_config": local_replies.local_reply_config(
            _families(spec),
            native_grpc_regex=NATIVE_GRPC_CONTENT_TYPE,
            reject_header=LUA_REJECT_HEADER,
            transcoder_header=TRANSCODER_HEADER,
            not_json_prefix=NOT_JSON,
            max_request_body_bytes=spec.max_request_body_bytes,
        ),
        "route_config": {
            "name": "thingwire",
            "virtual_hosts": [_virtual_host(spec)],
            "request_headers_to_add": [
                CLIENT_ADDRESS_HEADER,
                *([ORIGINAL_HOST_HEADER] if spec.forward_host else []),
            ],
            "request_headers_to_remove": [PROTOCOL_HEADER],
        },
        # Order matters: Lua moves ?authorization= before the transcoder matches the path,
        # and on the way back sees the transcoder's answer, so it can copy the ready body.
        "http_filters": [
            {"name": LUA_FILTER, "typed_config": lua},
            # The transcoder enforces max_request_body_size only on HttpBody rpcs and streams
            # JSON bodies through, so a big JSON body would reach the server; the buffer
            # filter answers 413 for every REST body over the limit.
            {
                "name": "envoy.filters.http.buffer",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.http.buffer.v3.Buffer",
                    "max_request_bytes": spec.max_request_body_bytes,
                },
            },
            {
                "name": "envoy.filters.http.grpc_json_transcoder",
                "typed_config": transcoder_config(spec),
            },
            {
                "name": "envoy.filters.http.router",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
                },
            },
        ],
    }


def _keepalive(spec: GatewaySpec) -> dict[str, Any]:
    """HTTP/2 keepalive: a PING every interval (plus Envoy's default 15% jitter), and the
    connection closed when one is not answered within the timeout."""
    return {
        "interval": _duration(spec.keepalive_interval_s),
        "timeout": _duration(spec.keepalive_timeout_s),
    }


def _upstream_addresses(spec: GatewaySpec) -> list[dict[str, Any]]:
    if spec.upstream_socket is not None:
        sockets = (spec.upstream_socket, *spec.more_upstream_sockets)
        return [{"pipe": {"path": str(path)}} for path in sockets]
    return [_socket(spec.upstream_host, spec.upstream_port)]


def _virtual_host(spec: GatewaySpec) -> dict[str, Any]:
    """The listener's one virtual host. With several upstreams a request that could not be
    sent to one (its replica is down or restarting) is sent to another: only failures
    before anything reached the server are retried, so no call runs twice."""
    host: dict[str, Any] = {"name": "all", "domains": ["*"], "routes": _routes(spec)}
    if spec.more_upstream_sockets:
        host["retry_policy"] = {
            "retry_on": "connect-failure,refused-stream,reset-before-request",
            "num_retries": len(spec.more_upstream_sockets),
            "retry_host_predicate": [
                {
                    "name": "envoy.retry_host_predicates.previous_hosts",
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.retry.host."
                        "previous_hosts.v3.PreviousHostsPredicate"
                    },
                }
            ],
            "host_selection_retry_max_attempts": 3,
        }
    return host


def _outlier_detection() -> dict[str, Any]:
    """Take a replica that refuses connections out of the balance for a few seconds, so
    that while it restarts calls go straight to the others."""
    return {
        "split_external_local_origin_errors": True,
        "consecutive_local_origin_failure": 1,
        "enforcing_consecutive_local_origin_failure": 100,
        "interval": "1s",
        "base_ejection_time": "2s",
        "max_ejection_percent": 100,
    }


def _cluster(spec: GatewaySpec) -> dict[str, Any]:
    endpoints = [{"endpoint": {"address": address}} for address in _upstream_addresses(spec)]
    limit = 1_000_000  # one stream per device: Envoy's default of 1024 requests is too few
    cluster: dict[str, Any] = {
        "name": UPSTREAM_CLUSTER,
        "type": "STATIC",
        "connect_timeout": _duration(spec.connect_timeout_s),
        "load_assignment": {
            "cluster_name": UPSTREAM_CLUSTER,
            "endpoints": [{"lb_endpoints": endpoints}],
        },
        "typed_extension_protocol_options": {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": "type.googleapis.com/"
                "envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                "explicit_http_config": {
                    "http2_protocol_options": {"connection_keepalive": _keepalive(spec)}
                },
            }
        },
        "circuit_breakers": {
            "thresholds": [
                {
                    "max_connections": limit,
                    "max_pending_requests": limit,
                    "max_requests": limit,
                    "max_retries": 3,
                }
            ]
        },
    }
    if spec.more_upstream_sockets:
        cluster["outlier_detection"] = _outlier_detection()
    return cluster


def render_config(spec: GatewaySpec) -> dict[str, Any]:
    """The whole Envoy bootstrap for `spec`, as dicts ready for `json.dumps`."""
    listener = {
        "name": f"{spec.name}_http",
        "address": _socket(spec.listen_host, spec.listen_port),
        # Envoy defaults to SO_REUSEPORT on Linux, which would let a second stack silently
        # share a taken port instead of failing to start.
        "enable_reuse_port": False,
        "per_connection_buffer_limit_bytes": max(MIB, spec.max_request_body_bytes),
        "filter_chains": [
            {
                "filters": [
                    {
                        "name": "envoy.filters.network.http_connection_manager",
                        "typed_config": _http_connection_manager(spec),
                    }
                ]
            }
        ],
    }
    return {
        "node": {"id": f"thingwire-{spec.name}", "cluster": "thingwire"},
        "admin": {"address": _socket("127.0.0.1", spec.admin_port)},
        "static_resources": {
            "listeners": [listener, _refusal_listener(spec)],
            "clusters": [_cluster(spec), _refusal_cluster(spec)],
        },
        "bootstrap_extensions": [
            {
                "name": "envoy.bootstrap.internal_listener",
                "typed_config": {
                    "@type": "type.googleapis.com/"
                    "envoy.extensions.bootstrap.internal_listener.v3.InternalListener"
                },
            }
        ],
        "overload_manager": {
            "resource_monitors": [
                {
                    "name": "envoy.resource_monitors.global_downstream_max_connections",
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.resource_monitors."
                        "downstream_connections.v3.DownstreamConnectionsConfig",
                        "max_active_downstream_connections": spec.max_downstream_connections,
                    },
                }
            ]
        },
    }


def render_json(spec: GatewaySpec) -> str:
    """The bootstrap as JSON text, the form written to disk for `envoy --config-path`."""
    return json.dumps(render_config(spec), indent=2, sort_keys=False) + "\n"


__all__ = [
    "CLOUD_ERROR_RULES",
    "DEVICE_PACKAGE",
    "GRPC_OVER_HTTP1_MESSAGE",
    "GRPC_OVER_HTTP1_STATUS",
    "NATIVE_GRPC_CONTENT_TYPE",
    "PROTOCOL_HEADER",
    "REFUSAL_LISTENER",
    "ErrorRule",
    "GatewaySpec",
    "cloud_spec",
    "device_spec",
    "event_stream_services",
    "lua_source",
    "render_config",
    "render_json",
    "transcoded_services",
    "transcoder_config",
]
