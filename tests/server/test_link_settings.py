"""The THINGWIRE_LINK_* settings: read, checked, and carried to the server and the gateway."""

from __future__ import annotations

from pathlib import Path

import pytest

from device_agent.channel import keepalive_options as agent_keepalive_options
from gateway.config import cloud_spec, render_config
from server.app import keepalive_options
from server.config import ConfigError, Settings
from server.link.link import LinkLimits
from server.serve import link_limits
from tests.gateway.conftest import DESCRIPTOR


def test_defaults_notice_a_dead_link_within_thirty_seconds() -> None:
    settings = Settings.from_env({})
    assert settings.link_keepalive_s + settings.link_keepalive_timeout_s <= 30
    assert link_limits(settings) == LinkLimits()


def test_each_variable_reaches_the_link_limits() -> None:
    settings = Settings.from_env(
        {
            "THINGWIRE_LINK_KEEPALIVE_S": "4",
            "THINGWIRE_LINK_KEEPALIVE_TIMEOUT_S": "2.5",
            "THINGWIRE_LINK_MAX_CALLS_IN_FLIGHT": "7",
            "THINGWIRE_LINK_GO_AWAY_WINDOW_S": "0",
            "THINGWIRE_LINK_STATS_INTERVAL_S": "30",
            "THINGWIRE_LINK_MAX_UPLOAD_BYTES": "65536",
            "THINGWIRE_LINK_MAX_UPLOAD_RECORDS": "500",
            "THINGWIRE_LINK_MAX_UPLOADS_IN_FLIGHT": "2",
        }
    )
    assert link_limits(settings) == LinkLimits(
        max_calls_in_flight=7,
        go_away_window_s=0,
        keepalive_s=4,
        keepalive_timeout_s=2.5,
        stats_interval_s=30,
        max_upload_bytes=65536,
        max_upload_records=500,
        max_uploads_in_flight=2,
    )


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("THINGWIRE_LINK_KEEPALIVE_S", "0.5"),
        ("THINGWIRE_LINK_KEEPALIVE_S", "soon"),
        ("THINGWIRE_LINK_KEEPALIVE_TIMEOUT_S", "inf"),
        ("THINGWIRE_LINK_KEEPALIVE_TIMEOUT_S", "nan"),
        ("THINGWIRE_LINK_MAX_CALLS_IN_FLIGHT", "0"),
        ("THINGWIRE_LINK_MAX_CALLS_IN_FLIGHT", "2.5"),
        ("THINGWIRE_LINK_GO_AWAY_WINDOW_S", "-1"),
        ("THINGWIRE_LINK_STATS_INTERVAL_S", "0"),
        ("THINGWIRE_LINK_STATS_INTERVAL_S", ""),
        ("THINGWIRE_RESOURCE_CALL_TIMEOUT_S", ""),
        ("THINGWIRE_LINK_MAX_UPLOAD_BYTES", "100"),
        ("THINGWIRE_LINK_MAX_UPLOAD_BYTES", str(8 * 1024 * 1024)),
        ("THINGWIRE_LINK_MAX_UPLOAD_RECORDS", "0"),
        ("THINGWIRE_LINK_MAX_UPLOAD_RECORDS", ""),
        ("THINGWIRE_LINK_MAX_UPLOADS_IN_FLIGHT", "0"),
        ("THINGWIRE_LINK_MAX_UPLOADS_IN_FLIGHT", "1000"),
    ],
)
def test_unusable_values_are_refused_by_name(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        Settings.from_env({name: value})


def test_the_server_pings_and_accepts_the_gateways_pings() -> None:
    options = dict(keepalive_options(LinkLimits(keepalive_s=2, keepalive_timeout_s=1)))
    assert options["grpc.keepalive_time_ms"] == 2000
    assert options["grpc.keepalive_timeout_ms"] == 1000
    # The gateway pings every keepalive_s: the server must not take that for abuse.
    assert options["grpc.http2.min_ping_interval_without_data_ms"] <= 1000
    assert options["grpc.http2.max_pings_without_data"] == 0
    default = dict(keepalive_options(LinkLimits()))
    assert default["grpc.http2.min_ping_interval_without_data_ms"] == 5000


def test_the_gateway_is_rendered_with_the_keepalive(tmp_path: Path) -> None:
    settings = Settings.from_env(
        {"THINGWIRE_LINK_KEEPALIVE_S": "3", "THINGWIRE_LINK_KEEPALIVE_TIMEOUT_S": "2"}
    )
    spec = cloud_spec(
        8080,
        50051,
        9901,
        DESCRIPTOR,
        keepalive_interval_s=settings.link_keepalive_s,
        keepalive_timeout_s=settings.link_keepalive_timeout_s,
    )
    listener = render_config(spec)["static_resources"]["listeners"][0]
    hcm = listener["filter_chains"][0]["filters"][0]["typed_config"]
    assert hcm["http2_protocol_options"]["connection_keepalive"] == {
        "interval": "3s",
        "timeout": "2s",
    }


def test_the_agent_channel_pings_no_faster_than_the_server_accepts() -> None:
    options = dict(agent_keepalive_options(6, 3))
    assert options["grpc.keepalive_time_ms"] == 6000
    assert options["grpc.keepalive_timeout_ms"] == 3000
    assert options["grpc.http2.max_pings_without_data"] == 0
    with pytest.raises(ValueError, match="at least 5"):
        agent_keepalive_options(1, 1)
