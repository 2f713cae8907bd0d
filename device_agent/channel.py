"""Channels for the agent's link, with the keepalive a long-lived stream needs.

A link is quiet most of the time, and a quiet TCP connection can die without a sound (a NAT
forgets it, a cable is pulled). The channel PINGs the server (or the gateway) every
`keepalive_s` and gives the connection up when a PING goes unanswered for `timeout_s`, so
the agent notices, reconnects and carries on (docs/device-link.md, "Link health").

    agent = Agent(insecure_channel_factory("cloud:8080"), user=..., device=..., credentials=...)

The server accepts a PING every 5 s at most on a quiet connection; pinging more often
makes it close the connection ("too many pings").
"""

from __future__ import annotations

from collections.abc import Callable

import grpc

#: The agent's default PING period and the time a PING may take to be answered.
KEEPALIVE_S = 20.0
KEEPALIVE_TIMEOUT_S = 10.0
#: The server's floor for PINGs on a quiet connection (server/app.py).
MIN_KEEPALIVE_S = 5.0


def keepalive_options(
    keepalive_s: float = KEEPALIVE_S, timeout_s: float = KEEPALIVE_TIMEOUT_S
) -> list[tuple[str, int]]:
    """gRPC channel options that PING a quiet link and drop it when a PING is not answered."""
    if keepalive_s < MIN_KEEPALIVE_S:
        raise ValueError(f"keepalive_s must be at least {MIN_KEEPALIVE_S:g} s (the server's floor)")
    if timeout_s <= 0:
        raise ValueError("timeout_s must be positive")
    return [
        ("grpc.keepalive_time_ms", int(keepalive_s * 1000)),
        ("grpc.keepalive_timeout_ms", int(timeout_s * 1000)),
        # The link is one long call; keep pinging however long nothing else is sent.
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.max_pings_without_data", 0),
    ]


def insecure_channel_factory(
    target: str, keepalive_s: float = KEEPALIVE_S, timeout_s: float = KEEPALIVE_TIMEOUT_S
) -> Callable[[], grpc.aio.Channel]:
    """A channel factory for `Agent`: plaintext to `target` ("host:port"), with keepalive."""
    options = keepalive_options(keepalive_s, timeout_s)
    return lambda: grpc.aio.insecure_channel(target, options=options)


__all__ = ["insecure_channel_factory", "keepalive_options"]
