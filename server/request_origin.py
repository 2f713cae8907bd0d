"""Where a call comes from: the client's address, which only the gateway may speak for.

The server listens on two addresses: its loopback TCP port (`THINGWIRE_GRPC_PORT`, for
direct gRPC clients and `thingwire status`) and a Unix socket in the state directory that
only its owner, and so only the Envoy that `serve` starts, can open. Envoy sets
`x-forwarded-for` to the address of the peer it accepted the connection from, replacing
whatever the client sent. So `x-forwarded-for` is believed only on calls that arrive over
the Unix socket; on the TCP port anyone could write it, and the TCP peer is the address.
"""

from __future__ import annotations

from collections.abc import Mapping

import grpc

MAX_ADDRESS_LENGTH = 64
#: How grpc names the peer of a call that came over a Unix domain socket.
UNIX_PEER_PREFIX = "unix:"


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
    """The client's IP address (text), or "" when it cannot be told.

    Through the gateway (a Unix socket peer) it is the rightmost `x-forwarded-for` entry;
    otherwise it is the host of the gRPC peer, and `x-forwarded-for` is ignored.
    """
    peer = peer or ""
    if peer.startswith(UNIX_PEER_PREFIX):
        forwarded = metadata.get("x-forwarded-for", "")
        return forwarded.rsplit(",", 1)[-1].strip()[:MAX_ADDRESS_LENGTH]
    return _peer_host(peer)[:MAX_ADDRESS_LENGTH]


def _peer_host(peer: str) -> str:
    """The host of a gRPC TCP peer string: "ipv4:1.2.3.4:5", "ipv6:[::1]:5"."""
    kind, _, rest = peer.partition(":")
    if kind == "ipv4":
        return rest.rsplit(":", 1)[0]
    if kind == "ipv6":
        return rest.rsplit(":", 1)[0].strip("[]")
    return peer
