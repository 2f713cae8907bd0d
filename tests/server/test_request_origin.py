"""The client's address: Envoy's rightmost x-forwarded-for entry, else the gRPC peer."""

from __future__ import annotations

import pytest

from server.request_origin import client_address


@pytest.mark.parametrize(
    ("metadata", "peer", "expected"),
    [
        ({"x-forwarded-for": "203.0.113.7"}, "ipv4:127.0.0.1:5000", "203.0.113.7"),
        # A client may send its own header; Envoy appends the real peer, which wins.
        ({"x-forwarded-for": "1.2.3.4, 203.0.113.7"}, None, "203.0.113.7"),
        ({}, "ipv4:192.0.2.1:443", "192.0.2.1"),
        ({}, "ipv6:[2001:db8::1]:443", "2001:db8::1"),
        ({}, "unix:/tmp/sock", "unix:/tmp/sock"),
        ({}, None, ""),
    ],
)
def test_client_address(metadata: dict[str, str], peer: str | None, expected: str) -> None:
    assert client_address(metadata, peer) == expected
