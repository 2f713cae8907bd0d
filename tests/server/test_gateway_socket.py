"""The gateway's Unix socket: owner-only, never stolen from a live server, and Envoy's upstream."""

from __future__ import annotations

import socket
import stat
from pathlib import Path

import pytest

from gateway.config import (
    CLIENT_ADDRESS_HEADER,
    REFUSAL_LISTENER,
    UPSTREAM_CLUSTER,
    cloud_spec,
    render_config,
)
from server.gateway_socket import MAX_PATH_BYTES, grpc_address
from server.serve import DESCRIPTOR_PATH
from tests.server.conftest import ServerUnderTest

DESCRIPTOR = DESCRIPTOR_PATH


def test_only_the_owner_can_reach_the_socket(grpc_server: ServerUnderTest) -> None:
    path = grpc_server.running.gateway_socket
    assert path is not None
    assert stat.S_ISSOCK(path.stat().st_mode)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700


def test_a_socket_left_by_a_dead_server_is_replaced(tmp_path: Path) -> None:
    path = tmp_path / "run" / "gateway.sock"
    path.parent.mkdir()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as dead:
        dead.bind(str(path))
    assert grpc_address(path) == f"unix:{path}"
    assert not path.exists()


def test_a_socket_a_live_server_uses_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "gateway.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as live:
        live.bind(str(path))
        live.listen()
        with pytest.raises(OSError, match="another server is using it"):
            grpc_address(path)


def test_a_path_too_long_for_a_socket_is_refused(tmp_path: Path) -> None:
    path = tmp_path / ("x" * MAX_PATH_BYTES) / "gateway.sock"
    with pytest.raises(OSError, match="at most 107 bytes"):
        grpc_address(path)


def test_envoy_reaches_the_server_over_the_socket_and_names_the_real_peer(
    tmp_path: Path,
) -> None:
    path = tmp_path / "gateway.sock"
    config = render_config(cloud_spec(8080, 50051, 9901, DESCRIPTOR, upstream_socket=path))
    resources = config["static_resources"]
    # The refusal listener and its cluster are the gateway's own (no upstream, no client).
    (cluster,) = [c for c in resources["clusters"] if c["name"] == UPSTREAM_CLUSTER]
    (endpoints,) = cluster["load_assignment"]["endpoints"]
    assert endpoints["lb_endpoints"][0]["endpoint"]["address"] == {"pipe": {"path": str(path)}}
    (listener,) = [item for item in resources["listeners"] if item["name"] != REFUSAL_LISTENER]
    manager = listener["filter_chains"][0]["filters"][0]["typed_config"]
    assert manager["use_remote_address"] is True
    assert "xff_num_trusted_hops" not in manager  # Envoy is the edge
    assert manager["route_config"]["request_headers_to_add"] == [CLIENT_ADDRESS_HEADER]
