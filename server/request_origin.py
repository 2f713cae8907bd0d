"""Where a call comes from: the client's address, as Envoy saw it.

Envoy runs with `use_remote_address`, so it appends the address of the peer it accepted the
connection from to `x-forwarded-for`; the rightmost entry is the one no client can forge.
A call made straight to the server (not through Envoy) has only its gRPC peer.
"""

from __future__ import annotations

from collections.abc import Mapping

import grpc

MAX_ADDRESS_LENGTH = 64


def metadata_of(context: grpc.aio.ServicerContext) -> dict[str, str]:
    """The call's text metadata, keys lower-cased (binary `-bin` values are left out)."""
    return {
        key.lower(): value
        for key, value in context.invocation_metadata() or ()
        if isinstance(value, str)
    }


def client_of(context: grpc.aio.ServicerContext) -> str:
    """The client's address for a call (see `client_address`)."""
    return client_address(metadata_of(context), context.peer())


def client_address(metadata: Mapping[str, str], peer: str | None) -> str:
    """The client's IP address (text), or "" when it cannot be told."""
    forwarded = metadata.get("x-forwarded-for", "")
    if forwarded:
        return forwarded.rsplit(",", 1)[-1].strip()[:MAX_ADDRESS_LENGTH]
    return _peer_host(peer or "")[:MAX_ADDRESS_LENGTH]


def _peer_host(peer: str) -> str:
    """The host of a gRPC peer string: "ipv4:1.2.3.4:5", "ipv6:[::1]:5", "unix:…"."""
    kind, _, rest = peer.partition(":")
    if kind == "ipv4":
        return rest.rsplit(":", 1)[0]
    if kind == "ipv6":
        return rest.rsplit(":", 1)[0].strip("[]")
    return kind if rest == "" else peer
