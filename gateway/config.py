"""Renders the Envoy bootstrap that puts REST/JSON and gRPC on one port in front of thingwire.

The config is built as plain dicts from a small frozen `GatewaySpec` and dumped as JSON
(Envoy reads JSON with `--config-path x.json`), so nothing but the standard library is needed
and a test can assert on the structure instead of on text. Every choice below that is not an
Envoy default was verified with Envoy 1.40 (see docs/design.md, "Gateway facts").
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import StrEnum
from importlib import resources
from pathlib import Path
from typing import Any

from google.api import annotations_pb2
from google.protobuf import descriptor_pb2

MIB = 1024 * 1024

#: The package of the AutoPi Local API, served by the device gateway; every other package's
#: services with HTTP rules are the cloud gateway's.
DEVICE_PACKAGE = "thingwire.local.v1"

#: Native gRPC: exactly application/grpc or application/grpc+<codec>, any parameters after
#: ";", any case. grpc-web and the like are REST to the transcoder and go the REST way (its
#: body limit, its error shapes); filters.lua's is_grpc mirrors this.
NATIVE_GRPC_CONTENT_TYPE = r"(?i)^application/grpc(\+[^;]*)?(;.*)?$"

#: Paths whose rpc streams server-sent events (Thinger's device stats).
SSE_PATH_REGEX = r".*/stats"


class ErrorShape(StrEnum):
    """The documented error body of one API family; the Lua filter writes errors in it."""

    #: Thinger: `{"error": {"message": "..."}}`.
    THINGER = "thinger"
    #: Datacooee (JSON:API): `{"errors": [{"status": "401", "title": "...", "detail": "..."}]}`.
    JSON_API = "json_api"
    #: AutoPi cloud (Django REST framework): `{"detail": "..."}`.
    DETAIL = "detail"
    #: AutoPi Local API: `{"error": "..."}`.
    ERROR_STRING = "error_string"


@dataclass(frozen=True)
class ErrorRule:
    """Requests whose path starts with `prefix` get their errors in `shape`."""

    prefix: str
    shape: ErrorShape


#: Error families of the cloud gateway, first match wins; anything else is AutoPi cloud.
CLOUD_ERROR_RULES: tuple[ErrorRule, ...] = (
    ErrorRule("/v1/", ErrorShape.THINGER),
    ErrorRule("/v2/", ErrorShape.THINGER),
    ErrorRule("/oauth/", ErrorShape.THINGER),
    ErrorRule("/api/external/", ErrorShape.JSON_API),
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
    default_error_shape: ErrorShape = ErrorShape.DETAIL
    listen_host: str = "0.0.0.0"  # noqa: S104 - the gateway is the public face
    upstream_host: str = "127.0.0.1"
    max_request_body_bytes: int = 8 * MIB
    max_response_body_bytes: int = 64 * MIB
    #: Routes matching this regex stream JSON as server-sent events; None turns it off.
    sse_path_regex: str | None = SSE_PATH_REGEX
    #: Deadline of a unary REST call; gRPC calls use their own grpc-timeout instead.
    unary_timeout_s: float = 60.0
    connect_timeout_s: float = 5.0
    max_downstream_connections: int = 100_000

    def __post_init__(self) -> None:
        for label in ("listen_port", "admin_port", "upstream_port"):
            port = getattr(self, label)
            if not 1 <= port <= 65535:
                raise ValueError(f"{label} must be in 1..65535, got {port}")
        if self.listen_port == self.admin_port:
            raise ValueError("listen_port and admin_port must differ")
        if self.max_request_body_bytes <= 0 or self.max_response_body_bytes <= 0:
            raise ValueError("body size limits must be positive")


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
        "default_error_shape": ErrorShape.DETAIL,
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

    Until the agent's LocalService has HTTP rules, it transcodes no service.
    """
    defaults: dict[str, Any] = {
        "name": "device",
        "services": transcoded_services(descriptor, device=True),
        "error_rules": (),
        "default_error_shape": ErrorShape.ERROR_STRING,
        "sse_path_regex": None,
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

    Envoy's Lua filter takes no parameters, so the per-gateway facts (error families, body
    limit) are written into the script itself.
    """
    rules = ", ".join(
        f"{{prefix = {_lua_string(r.prefix)}, shape = {_lua_string(r.shape.value)}}}"
        for r in spec.error_rules
    )
    preamble = (
        "-- Generated by gateway/config.py for the "
        f"{spec.name} gateway; the filter follows.\n"
        "local CONFIG = {\n"
        f"  rules = {{{rules}}},\n"
        f"  default_shape = {_lua_string(spec.default_error_shape.value)},\n"
        f"  max_request_body_bytes = {spec.max_request_body_bytes},\n"
        "}\n"
    )
    script = resources.files("gateway").joinpath("filters.lua").read_text(encoding="utf-8")
    return preamble + script


def _lua_string(value: str) -> str:
    """A Lua string literal; JSON escapes are valid Lua escapes for what we write."""
    return json.dumps(value)


def _duration(seconds: float) -> str:
    """A protobuf Duration in JSON form."""
    return f"{seconds:g}s"


def _socket(host: str, port: int) -> dict[str, Any]:
    return {"socket_address": {"address": host, "port_value": port}}


def transcoder_config(spec: GatewaySpec, *, sse: bool = False) -> dict[str, Any]:
    """The grpc_json_transcoder settings; `sse` gives the per-route variant for event streams.

    A per-route transcoder config replaces the listener's whole, so both come from here.
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
        "services": list(spec.services),
        "print_options": print_options,
        "convert_grpc_status": True,
        "ignore_unknown_query_parameters": True,
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


def _routes(spec: GatewaySpec) -> list[dict[str, Any]]:
    """Native gRPC first (no deadline but its own), then SSE streams, then unary REST."""
    cluster = "thingwire_grpc"
    routes: list[dict[str, Any]] = [
        {
            "name": "grpc",
            "match": {
                "prefix": "/",
                "headers": [
                    {
                        "name": "content-type",
                        "string_match": {"safe_regex": {"regex": NATIVE_GRPC_CONTENT_TYPE}},
                    }
                ],
            },
            "route": {
                "cluster": cluster,
                # Device links are long-lived streams: no route deadline, no idle cut-off;
                # a unary gRPC call's deadline is the client's grpc-timeout.
                "timeout": "0s",
                "idle_timeout": "0s",
                "max_stream_duration": {"grpc_timeout_header_max": "0s"},
            },
            # gRPC streams are not buffered; the gRPC server enforces its own message limit.
            "typed_per_filter_config": {
                "envoy.filters.http.buffer": {
                    "@type": "type.googleapis.com/"
                    "envoy.extensions.filters.http.buffer.v3.BufferPerRoute",
                    "disabled": True,
                }
            },
        }
    ]
    if spec.sse_path_regex:
        routes.append(
            {
                "name": "sse",
                "match": {"safe_regex": {"regex": spec.sse_path_regex}},
                "route": {"cluster": cluster, "timeout": "0s", "idle_timeout": "0s"},
                "typed_per_filter_config": {
                    "envoy.filters.http.grpc_json_transcoder": transcoder_config(spec, sse=True)
                },
            }
        )
    routes.append(
        {
            "name": "rest",
            "match": {"prefix": "/"},
            "route": {"cluster": cluster, "timeout": _duration(spec.unary_timeout_s)},
        }
    )
    return routes


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
        # The server sees the client's address in x-forwarded-for (device ip_address).
        "use_remote_address": True,
        "http2_protocol_options": {"max_concurrent_streams": 1024},
        "route_config": {
            "name": "thingwire",
            "virtual_hosts": [{"name": "all", "domains": ["*"], "routes": _routes(spec)}],
        },
        # Order matters: Lua moves ?authorization= before the transcoder matches the path,
        # and on the way back sees the transcoder's answer, so it can reshape errors.
        "http_filters": [
            {"name": "envoy.filters.http.lua", "typed_config": lua},
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


def _cluster(spec: GatewaySpec) -> dict[str, Any]:
    endpoint = {"endpoint": {"address": _socket(spec.upstream_host, spec.upstream_port)}}
    limit = 1_000_000  # one stream per device: Envoy's default of 1024 requests is too few
    return {
        "name": "thingwire_grpc",
        "type": "STATIC",
        "connect_timeout": _duration(spec.connect_timeout_s),
        "load_assignment": {
            "cluster_name": "thingwire_grpc",
            "endpoints": [{"lb_endpoints": [endpoint]}],
        },
        "typed_extension_protocol_options": {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": "type.googleapis.com/"
                "envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                "explicit_http_config": {
                    "http2_protocol_options": {
                        "connection_keepalive": {"interval": "30s", "timeout": "20s"}
                    }
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
        "static_resources": {"listeners": [listener], "clusters": [_cluster(spec)]},
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
    "SSE_PATH_REGEX",
    "ErrorRule",
    "ErrorShape",
    "GatewaySpec",
    "cloud_spec",
    "device_spec",
    "lua_source",
    "render_config",
    "render_json",
    "transcoded_services",
    "transcoder_config",
]
