"""The rendered bootstrap: ports, services, limits, routes and the Lua filter."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from google.api import annotations_pb2
from google.protobuf import descriptor_pb2

from gateway.config import (
    NATIVE_GRPC_CONTENT_TYPE,
    ErrorShape,
    GatewaySpec,
    cloud_spec,
    device_spec,
    lua_source,
    render_config,
    render_json,
    transcoded_services,
)
from tests.gateway.conftest import DESCRIPTOR

CLOUD = transcoded_services(DESCRIPTOR, device=False)
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
    assert transcoder["services"] == list(CLOUD)
    assert transcoder["convert_grpc_status"] is True
    assert transcoder["ignore_unknown_query_parameters"] is True
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
    assert "max_request_body_bytes = 1234" in lua_source(spec)


def test_grpc_route_has_no_deadline_and_no_buffering(spec: GatewaySpec) -> None:
    grpc_route = _routes(render_config(spec))["grpc"]
    assert grpc_route["match"]["headers"][0]["string_match"] == {
        "safe_regex": {"regex": NATIVE_GRPC_CONTENT_TYPE}
    }
    assert grpc_route["route"]["timeout"] == "0s"
    assert grpc_route["route"]["max_stream_duration"] == {"grpc_timeout_header_max": "0s"}
    assert grpc_route["typed_per_filter_config"]["envoy.filters.http.buffer"]["disabled"]


def test_rest_route_has_a_deadline() -> None:
    spec = cloud_spec(8080, 50051, 9901, DESCRIPTOR, unary_timeout_s=12.5)
    assert _routes(render_config(spec))["rest"]["route"]["timeout"] == "12.5s"


def test_sse_route_streams_event_frames(spec: GatewaySpec) -> None:
    sse = _routes(render_config(spec))["sse"]
    assert sse["match"]["safe_regex"]["regex"] == ".*/stats"
    assert sse["route"]["timeout"] == "0s"
    per_route = sse["typed_per_filter_config"]["envoy.filters.http.grpc_json_transcoder"]
    assert per_route["print_options"]["stream_sse_style_delimited"] is True
    assert per_route["services"] == list(CLOUD)


def test_sse_route_can_be_turned_off() -> None:
    spec = cloud_spec(8080, 50051, 9901, DESCRIPTOR, sse_path_regex=None)
    assert "sse" not in _routes(render_config(spec))


def test_lua_filter_is_inlined_with_the_error_families(spec: GatewaySpec) -> None:
    source = _filter(render_config(spec), "envoy.filters.http.lua")["default_source_code"]
    code = source["inline_string"]
    assert "function envoy_on_request(handle)" in code
    assert "function envoy_on_response(handle)" in code
    assert spec.error_rules
    for rule in spec.error_rules:
        assert f'{{prefix = "{rule.prefix}", shape = "{rule.shape.value}"}}' in code
    assert f'default_shape = "{spec.default_error_shape.value}"' in code


def test_device_gateway_uses_the_local_api_error_shape() -> None:
    """No path of the device gateway gets another family's shape: every error is the Local
    API's `{"error": "..."}`."""
    code = lua_source(device_spec(9000, 50052, 9902, DESCRIPTOR))
    assert "  rules = {},\n" in code
    assert f'default_shape = "{ErrorShape.ERROR_STRING.value}"' in code


def test_device_gateway_has_no_sse_route() -> None:
    assert "sse" not in _routes(render_config(device_spec(9000, 50052, 9902, DESCRIPTOR)))


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
