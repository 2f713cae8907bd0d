"""The rendered bootstrap: ports, services, limits, routes and the Lua filter."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from google.api import annotations_pb2
from google.protobuf import descriptor_pb2
from thingwire.options.v1 import options_pb2

from gateway.config import (
    CLOUD_ERROR_RULES,
    LUA_FILTER,
    NATIVE_GRPC_CONTENT_TYPE,
    PROTOCOL_HEADER,
    REFUSAL_LISTENER,
    GatewaySpec,
    cloud_spec,
    device_spec,
    lua_source,
    render_config,
    render_json,
    transcoded_services,
)
from gateway.http_rules import PathTemplate, http_rules
from server.rest_errors import render_error_body
from tests.gateway.conftest import DESCRIPTOR

CLOUD = transcoded_services(DESCRIPTOR, device=False)
STATS_STREAM = "thingwire.devices.v1.DeviceStatsStreamService"
TRANSCODER = "envoy.filters.http.grpc_json_transcoder"


@pytest.fixture
def spec() -> GatewaySpec:
    return cloud_spec(8080, 50051, 9901, DESCRIPTOR)


def _hcm(config: dict[str, Any]) -> dict[str, Any]:
    listener = config["static_resources"]["listeners"][0]
    return listener["filter_chains"][0]["filters"][0]["typed_config"]


def _filter(config: dict[str, Any], name: str) -> dict[str, Any]:
    filters = {f["name"]: f["typed_config"] for f in _hcm(config)["http_filters"]}
    return filters[name]


def _routes(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    routes = _hcm(config)["route_config"]["virtual_hosts"][0]["routes"]
    return {route["name"]: route for route in routes}


def test_listener_serves_rest_and_grpc_on_one_port(spec: GatewaySpec) -> None:
    config = render_config(spec)
    listener = config["static_resources"]["listeners"][0]
    public = {"address": "0.0.0.0", "port_value": 8080}  # noqa: S104 - the default
    assert listener["address"]["socket_address"] == public
    assert listener["enable_reuse_port"] is False
    assert _hcm(config)["codec_type"] == "AUTO"


def test_admin_is_bound_to_loopback(spec: GatewaySpec) -> None:
    admin = render_config(spec)["admin"]["address"]["socket_address"]
    assert admin == {"address": "127.0.0.1", "port_value": 9901}


def test_upstream_cluster_speaks_http2(spec: GatewaySpec) -> None:
    cluster = render_config(spec)["static_resources"]["clusters"][0]
    endpoint = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]
    assert endpoint["address"]["socket_address"] == {"address": "127.0.0.1", "port_value": 50051}
    options = cluster["typed_extension_protocol_options"][
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
    ]
    assert "http2_protocol_options" in options["explicit_http_config"]
    assert cluster["circuit_breakers"]["thresholds"][0]["max_requests"] >= 100_000


def test_filters_run_lua_then_buffer_then_transcoder(spec: GatewaySpec) -> None:
    names = [f["name"] for f in _hcm(render_config(spec))["http_filters"]]
    assert names == [
        "envoy.filters.http.lua",
        "envoy.filters.http.buffer",
        "envoy.filters.http.grpc_json_transcoder",
        "envoy.filters.http.router",
    ]


def test_transcoder_settings(spec: GatewaySpec) -> None:
    transcoder = _filter(render_config(spec), "envoy.filters.http.grpc_json_transcoder")
    assert transcoder["proto_descriptor"] == str(DESCRIPTOR)
    # The stats event stream binds the path of the JSON stats: only its SSE route has it.
    assert transcoder["services"] == [s for s in CLOUD if s != STATS_STREAM]
    assert STATS_STREAM in CLOUD
    assert transcoder["convert_grpc_status"] is True
    assert transcoder["ignore_unknown_query_parameters"] is True
    assert "ignored_query_parameters" not in transcoder  # the server re-binds the path
    assert transcoder["match_incoming_request_route"] is True
    assert transcoder["request_validation_options"] == {
        "reject_unknown_method": True,
        "reject_unknown_query_parameters": False,
    }
    assert transcoder["print_options"] == {
        "preserve_proto_field_names": True,
        "always_print_primitive_fields": True,
    }
    assert transcoder["max_request_body_size"] == spec.max_request_body_bytes


def _image(tmp_path: Path) -> Path:
    """A descriptor image with a REST service, a stream-only one, a device one and a foreign one."""
    image = descriptor_pb2.FileDescriptorSet()
    for package, service, with_rule in [
        ("thingwire.demo.v1", "RestService", True),
        ("thingwire.demo.v1", "StreamService", False),
        ("thingwire.local.v1", "LocalService", True),
        ("google.other.v1", "ForeignService", True),
    ]:
        proto_file = image.file.add(name=f"{package}/{service}.proto", package=package)
        method = proto_file.service.add(name=service).method.add(name="Call")
        if with_rule:
            method.options.Extensions[annotations_pb2.http].get = "/x"
    path = tmp_path / "image.binpb"
    path.write_bytes(image.SerializeToString())
    return path


def test_cloud_services_come_from_the_descriptor(tmp_path: Path) -> None:
    """Each gateway transcodes what the image it is given declares, not a list of its own."""
    image = _image(tmp_path)
    cloud = _filter(render_config(cloud_spec(8080, 50051, 9901, image)), TRANSCODER)
    assert cloud["services"] == ["thingwire.demo.v1.RestService"]
    device = device_spec(9000, 50052, 9902, image)
    rendered = _filter(render_config(device), TRANSCODER)
    assert rendered["services"] == ["thingwire.local.v1.LocalService"]


def test_only_services_with_http_rules_are_transcoded(tmp_path: Path) -> None:
    path = _image(tmp_path)
    assert transcoded_services(path, device=False) == ("thingwire.demo.v1.RestService",)
    assert transcoded_services(path, device=True) == ("thingwire.local.v1.LocalService",)


def test_body_limit_applies_to_buffer_and_transcoder() -> None:
    spec = cloud_spec(8080, 50051, 9901, DESCRIPTOR, max_request_body_bytes=1234)
    config = render_config(spec)
    assert _filter(config, "envoy.filters.http.buffer")["max_request_bytes"] == 1234
    transcoder = _filter(config, "envoy.filters.http.grpc_json_transcoder")
    assert transcoder["max_request_body_size"] == 1234
    assert "(limit 1234 bytes)" in json.dumps(_hcm(config)["local_reply_config"])


def test_grpc_route_has_no_deadline_no_buffering_and_no_lua(spec: GatewaySpec) -> None:
    grpc_route = _routes(render_config(spec))["grpc"]
    assert grpc_route["match"]["headers"][0]["string_match"] == {
        "safe_regex": {"regex": NATIVE_GRPC_CONTENT_TYPE}
    }
    assert grpc_route["route"]["timeout"] == "0s"
    assert grpc_route["route"]["idle_timeout"] == "0s"
    assert grpc_route["route"]["max_stream_duration"] == {
        "max_stream_duration": "0s",
        "grpc_timeout_header_max": "0s",
    }
    per_filter = grpc_route["typed_per_filter_config"]
    assert per_filter["envoy.filters.http.buffer"]["disabled"]
    # The route's match is the one classification of native gRPC: the filter never runs.
    assert per_filter[LUA_FILTER]["disabled"]


def test_grpc_route_takes_only_http2_and_the_rest_is_refused(spec: GatewaySpec) -> None:
    config = render_config(spec)
    names = list(_routes(config))
    assert names[:2] == ["grpc", "grpc over HTTP/1"]
    grpc_headers = _routes(config)["grpc"]["match"]["headers"]
    assert {"name": PROTOCOL_HEADER, "string_match": {"exact": "HTTP/2"}} in grpc_headers
    refused = _routes(config)["grpc over HTTP/1"]
    assert refused["route"]["cluster"] == REFUSAL_LISTENER
    assert refused["request_headers_to_remove"] == ["content-type"]
    # The client cannot choose the protocol header, and the server never sees it.
    mutation = _hcm(config)["early_header_mutation_extensions"][0]["typed_config"]
    assert mutation["mutations"][0]["append"] == {
        "header": {"key": PROTOCOL_HEADER, "value": "%PROTOCOL%"},
        "append_action": "OVERWRITE_IF_EXISTS_OR_ADD",
    }
    assert PROTOCOL_HEADER in _hcm(config)["route_config"]["request_headers_to_remove"]
    listeners = config["static_resources"]["listeners"]
    assert [listener["name"] for listener in listeners][1:] == [REFUSAL_LISTENER]


def test_rest_routes_have_deadlines() -> None:
    spec = cloud_spec(8080, 50051, 9901, DESCRIPTOR, unary_timeout_s=12.5, rest_idle_timeout_s=7)
    rest = _routes(render_config(spec))["rest"]["route"]
    assert (rest["timeout"], rest["idle_timeout"]) == ("12.5s", "7s")
    # Envoy 1.40 drops the route timeout of a transcoded call if the route has this.
    assert "max_stream_duration" not in rest


def test_request_bounds_are_configurable() -> None:
    spec = cloud_spec(
        8080,
        50051,
        9901,
        DESCRIPTOR,
        request_headers_timeout_s=1.5,
        request_timeout_s=3,
        unary_timeout_s=4,
        max_request_headers_kb=12,
    )
    hcm = _hcm(render_config(spec))
    assert hcm["request_headers_timeout"] == "1.5s"
    assert hcm["common_http_protocol_options"] == {"max_stream_duration": "7s"}
    assert hcm["max_request_headers_kb"] == 12


def test_uri_limit_must_fit_the_header_limit() -> None:
    with pytest.raises(ValueError, match="max_uri_bytes"):
        cloud_spec(8080, 50051, 9901, DESCRIPTOR, max_request_headers_kb=4, max_uri_bytes=8192)


def test_each_family_prefix_has_a_rest_route_with_its_fallback(spec: GatewaySpec) -> None:
    routes = _routes(render_config(spec))
    for rule in CLOUD_ERROR_RULES:
        route = routes[f"rest {rule.prefix}"]
        assert route["match"] == {"prefix": rule.prefix}
        fallback = route["metadata"]["filter_metadata"][LUA_FILTER]["fallback"]
        assert json.loads(fallback["500"]) == render_error_document(rule.family, 500)
    default = routes["rest"]["metadata"]["filter_metadata"][LUA_FILTER]["fallback"]
    assert json.loads(default["501"]) == {"detail": "Not Implemented"}
    assert list(routes)[-1] == "rest"


def render_error_document(family: int, status: int) -> object:
    return json.loads(render_error_body(family, status, "internal error"))


def _streaming_image(tmp_path: Path) -> Path:
    image = descriptor_pb2.FileDescriptorSet.FromString(DESCRIPTOR.read_bytes())
    proto_file = image.file.add(name="thingwire/demo/v1/stream.proto", package="thingwire.demo.v1")
    service = proto_file.service.add(name="StatsService")
    for name, streaming, path in [
        ("WatchStats", True, "/v2/users/{user}/devices/{device}/stats"),
        ("GetStats", False, "/v2/users/{user}/devices/{device}/summary"),
    ]:
        method = service.method.add(name=name, server_streaming=streaming)
        method.input_type = method.output_type = ".google.protobuf.Empty"
        method.options.Extensions[annotations_pb2.http].get = path
        method.options.Extensions[options_pb2.api_family] = options_pb2.API_FAMILY_THINGER
    path_ = tmp_path / "image.binpb"
    path_.write_bytes(image.SerializeToString())
    return path_


def test_sse_routes_come_from_server_streaming_rules(tmp_path: Path) -> None:
    image = _streaming_image(tmp_path)
    spec = cloud_spec(8080, 50051, 9901, image, services=(*CLOUD, "thingwire.demo.v1.StatsService"))
    routes = _routes(render_config(spec))
    sse = [route for name, route in routes.items() if name.startswith("sse GET /v2/")]
    assert [route["name"] for route in sse] == ["sse GET /v2/users/{user}/devices/{device}/stats"]
    (route,) = sse
    regex = re.compile(route["match"]["safe_regex"]["regex"])
    assert regex.match("/v2/users/ann/devices/d1/stats")
    assert regex.match("/v2/users/ann/devices/d1/stats/?authorization=x")
    assert not regex.match("/v2/users/ann/devices/d1/summary")
    assert not regex.match("/v1/users/ann/stats")
    assert route["match"]["headers"] == [{"name": ":method", "string_match": {"exact": "GET"}}]
    assert route["route"]["timeout"] == "0s"
    assert route["route"]["max_stream_duration"] == {"max_stream_duration": "0s"}
    per_route = route["typed_per_filter_config"]["envoy.filters.http.grpc_json_transcoder"]
    assert per_route["print_options"]["stream_sse_style_delimited"] is True
    fallback = route["metadata"]["filter_metadata"][LUA_FILTER]["fallback"]
    assert json.loads(fallback["404"]) == {"error": {"message": "Not Found"}}


def test_the_stats_path_is_events_only_for_an_event_stream_request(spec: GatewaySpec) -> None:
    """GET …/stats is JSON and, with `Accept: text/event-stream`, SSE: two rpcs on one path,
    told apart by the route (the transcoder ignores Accept)."""
    routes = _routes(render_config(spec))
    sse = [name for name in routes if name.startswith("sse")]
    assert sse == ["sse GET /v1/users/{user_id}/devices/{device_id}/stats"]
    route = routes[sse[0]]
    assert route["match"]["headers"] == [
        {"name": ":method", "string_match": {"exact": "GET"}},
        {"name": "accept", "string_match": {"contains": "text/event-stream", "ignore_case": True}},
    ]
    assert (route["route"]["timeout"], route["route"]["idle_timeout"]) == ("0s", "0s")
    assert route["route"]["max_stream_duration"] == {"max_stream_duration": "0s"}
    per_route = route["typed_per_filter_config"][TRANSCODER]
    assert per_route["services"] == [STATS_STREAM]
    assert per_route["print_options"]["stream_sse_style_delimited"] is True
    names = list(routes)
    assert names.index(sse[0]) < names.index("rest /v1/")


def test_http2_keepalive_on_both_sides_of_envoy() -> None:
    spec = cloud_spec(
        8080, 50051, 9901, DESCRIPTOR, keepalive_interval_s=2.5, keepalive_timeout_s=1.5
    )
    config = render_config(spec)
    keepalive = {"interval": "2.5s", "timeout": "1.5s"}
    assert _hcm(config)["http2_protocol_options"]["connection_keepalive"] == keepalive
    cluster = config["static_resources"]["clusters"][0]
    options = cluster["typed_extension_protocol_options"][
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
    ]
    upstream = options["explicit_http_config"]["http2_protocol_options"]
    assert upstream["connection_keepalive"] == keepalive
    # No connection-manager-wide request deadline; its stream idle timeout (5 min by
    # default) is switched off on the gRPC and SSE routes (idle_timeout 0s, tested above).
    assert "request_timeout" not in _hcm(config)


def test_keepalive_must_be_positive() -> None:
    with pytest.raises(ValueError, match="keepalive"):
        cloud_spec(8080, 50051, 9901, DESCRIPTOR, keepalive_timeout_s=0)


def test_lua_filter_is_inlined_with_its_settings(spec: GatewaySpec) -> None:
    source = _filter(render_config(spec), LUA_FILTER)["default_source_code"]
    code = source["inline_string"]
    assert "function envoy_on_request(handle)" in code
    assert "function envoy_on_response(handle)" in code
    assert "max_uri_bytes = 8192," in code
    assert code == lua_source(spec)


def test_the_lua_filter_reads_no_json() -> None:
    code = lua_source(cloud_spec(8080, 50051, 9901, DESCRIPTOR))
    for decoder_part in ("json_decode", "decode_value", "decode_string"):
        assert decoder_part not in code


def test_device_gateway_uses_the_local_api_family() -> None:
    spec = device_spec(9000, 50052, 9902, DESCRIPTOR)
    assert spec.default_family == options_pb2.API_FAMILY_LOCAL
    assert spec.error_rules == ()
    assert spec.services == ("thingwire.local.v1.LocalService",)
    config = render_config(spec)
    assert not [name for name in _routes(config) if name.startswith("sse")]
    mappers = _hcm(config)["local_reply_config"]["mappers"]
    formats = [
        m["body_format_override"]["json_format"]
        for m in mappers
        if "json_format" in m.get("body_format_override", {})
    ]
    assert formats
    assert all(set(document) == {"error"} for document in formats)


def test_render_json_round_trips(spec: GatewaySpec) -> None:
    assert json.loads(render_json(spec)) == render_config(spec)


@pytest.mark.parametrize(
    "overrides",
    [{"http_port": 0}, {"admin_port": 70000}, {"grpc_port": -1}, {"admin_port": 8080}],
)
def test_bad_ports_are_refused(overrides: dict[str, int]) -> None:
    ports = {"http_port": 8080, "grpc_port": 50051, "admin_port": 9901, **overrides}
    with pytest.raises(ValueError, match="port"):
        cloud_spec(descriptor=DESCRIPTOR, **ports)


def test_spec_is_frozen(spec: GatewaySpec) -> None:
    with pytest.raises(AttributeError):
        spec.listen_port = 1  # type: ignore[misc]


def test_path_prefixes_agree_with_each_rpcs_family(spec: GatewaySpec) -> None:
    """Envoy's own replies pick the family by path prefix, an rpc's errors by its option:
    both must name the same family for every documented path."""

    def by_prefix(template: str) -> int:
        for rule in spec.error_rules:
            if template.startswith(rule.prefix):
                return rule.family
        return spec.default_family

    rules = http_rules(DESCRIPTOR, spec.services)
    assert rules
    assert [(r.template, r.family) for r in rules if r.family != by_prefix(r.template)] == []


def test_a_path_template_binds_its_variables_percent_decoded() -> None:
    template = PathTemplate("/v1/users/{user_id}/tokens/{token_id}")
    assert template.bind("/v1/users/al%69ce/tokens/7/?user_id=bob") == {
        "user_id": "alice",
        "token_id": "7",
    }
    assert template.bind("/v1/users/alice/tokens") is None
    assert PathTemplate("/auth/api_tokens/{id}").bind("/auth/api_tokens/5?id=11") == {"id": "5"}


def test_replicas_are_one_cluster_with_an_endpoint_each_and_retries_before_sending() -> None:
    sockets = [Path(f"/run/tw/gateway-{i}.sock") for i in range(3)]
    replicas = cloud_spec(
        8080, 50051, 9901, DESCRIPTOR, upstream_socket=sockets[0],
        more_upstream_sockets=tuple(sockets[1:]),
    )  # fmt: skip
    config = render_config(replicas)
    cluster = config["static_resources"]["clusters"][0]
    endpoints = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"]
    assert [e["endpoint"]["address"]["pipe"]["path"] for e in endpoints] == [
        str(path) for path in sockets
    ]
    assert cluster["outlier_detection"]["consecutive_local_origin_failure"] == 1
    retry = _hcm(config)["route_config"]["virtual_hosts"][0]["retry_policy"]
    # Only failures before the request reached a server: no call runs twice.
    assert set(retry["retry_on"].split(",")) == {
        "connect-failure",
        "refused-stream",
        "reset-before-request",
    }
    assert retry["num_retries"] == 2
    # One process: one endpoint, no retries, no ejection (the config as before).
    single = render_config(cloud_spec(8080, 50051, 9901, DESCRIPTOR, upstream_socket=sockets[0]))
    assert "retry_policy" not in _hcm(single)["route_config"]["virtual_hosts"][0]
    assert "outlier_detection" not in single["static_resources"]["clusters"][0]
