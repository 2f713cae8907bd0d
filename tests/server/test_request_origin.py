"""The client's address: only the gateway's Unix socket may speak for it with x-forwarded-for."""

from __future__ import annotations

import pytest

from server.request_origin import client_address

GATEWAY = "unix:"  # what grpc reports for a call over the gateway's Unix socket


@pytest.mark.parametrize(
    ("metadata", "peer", "expected"),
    [
        ({"x-forwarded-for": "203.0.113.7"}, GATEWAY, "203.0.113.7"),
        # Envoy writes the header; should a list arrive, its rightmost entry is Envoy's.
        ({"x-forwarded-for": "1.2.3.4, 203.0.113.7"}, GATEWAY, "203.0.113.7"),
        ({}, GATEWAY, ""),
        # A direct caller on the TCP port cannot speak for another address.
        ({"x-forwarded-for": "203.0.113.7"}, "ipv4:127.0.0.1:5000", "127.0.0.1"),
        ({"x-forwarded-for": "203.0.113.7"}, "ipv6:[::1]:5000", "::1"),
        ({}, "ipv4:192.0.2.1:443", "192.0.2.1"),
        ({}, "ipv6:[2001:db8::1]:443", "2001:db8::1"),
        ({"x-forwarded-for": "203.0.113.7"}, None, ""),
    ],
)
def test_client_address(metadata: dict[str, str], peer: str | None, expected: str) -> None:
    assert client_address(metadata, peer) == expected
