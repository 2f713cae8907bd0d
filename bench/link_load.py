"""Load generator for the fleet benchmarks: holds many device links, each one an agent.

Each link is a `device_agent.agent.Agent` (the agent's own code: its Hello, its backoff with
full jitter, its GoAway handling, its link secret), declaring one output resource `ping`
that answers the device's number. Only the connection differs from a real device: the
links of one process share `--channels` HTTP/2 connections (a link is one stream; Envoy
allows 1,024 streams per connection), so that the generator's CPU and Envoy's memory go to
streams rather than to 10,000 TCP connections.

It reports on stdout, every `REPORT_S`, one line

    up <links welcomed now> <welcomes so far> [n,n,...]

listing the device numbers welcomed since the last line (a device that reconnected is
listed again), and runs until its stdin closes.

    python -m bench.link_load --target 127.0.0.1:8080 --user bench --first 0 --links 2500
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import resource
import sys
import time
from types import TracebackType
from typing import cast

import grpc

from device_agent.agent import Agent, ChannelFactory, LinkRefused
from device_agent.channel import keepalive_options

#: Device ids and link secrets follow one pattern, which the drivers write.
DEVICE = "bench{n}"
SECRET = "bench-link-secret-{n}"  # noqa: S105 - throwaway devices in a temp database
CREDENTIALS = "bench-device-credentials"
RESOURCE = "ping"
REPORT_S = 0.1
#: How fast a shared connection retries while the gateway is away: a real device opens a
#: fresh connection for each attempt (the agent's backoff paces it), so the shared one must
#: not add gRPC's own reconnect backoff (up to 120 s) on top.
CHANNEL_OPTIONS = [
    ("grpc.use_local_subchannel_pool", 1),
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
    *keepalive_options(),
]


class SharedChannel:
    """A channel the agents of this process share: entering it gives the channel, leaving
    it keeps it open (an agent closes its own channel after every link)."""

    def __init__(self, target: str) -> None:
        self.channel = grpc.aio.insecure_channel(target, options=CHANNEL_OPTIONS)

    async def __aenter__(self) -> grpc.aio.Channel:
        return self.channel

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        return None


def fleet_agent(target: SharedChannel, user: str, n: int) -> Agent:
    """Device `n`'s agent, opening with the link secret the driver stored for it."""
    agent = Agent(
        cast(ChannelFactory, lambda: target),
        user=user,
        device=DEVICE.format(n=n),
        credentials=CREDENTIALS,
    )
    agent.link_secret = SECRET.format(n=n)

    @agent.output(RESOURCE)
    async def ping() -> int:
        return n

    return agent


def raise_open_files_limit() -> int:
    """Lift the soft limit on open files to the hard one (each connection is one)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


async def report(agents: dict[int, Agent]) -> None:
    """Every REPORT_S, how many links are up and which devices were welcomed since."""
    seen = dict.fromkeys(agents, 0)
    while True:
        welcomed = []
        up = total = 0
        for n, agent in agents.items():
            up += agent.connected.is_set()
            total += agent.connections
            if agent.connections != seen[n]:
                seen[n] = agent.connections
                welcomed.append(n)
        listed = ",".join(map(str, welcomed))
        print(f"up {up} {total} {listed}", flush=True)
        await asyncio.sleep(REPORT_S)


async def serve(agent: Agent, delay_s: float) -> None:
    await asyncio.sleep(delay_s)
    try:
        await agent.serve()
    except LinkRefused as refused:
        print(f"refused {agent.resources} {refused}", file=sys.stderr, flush=True)


async def main(args: argparse.Namespace) -> None:
    raise_open_files_limit()
    channels = [SharedChannel(args.target) for _ in range(args.channels)]
    numbers = range(args.first, args.first + args.links)
    agents = {
        n: fleet_agent(channels[i % len(channels)], args.user, n) for i, n in enumerate(numbers)
    }
    started = time.monotonic()
    spread = args.links / args.open_rate if args.open_rate > 0 else 0.0
    tasks = [
        asyncio.create_task(serve(agent, spread * i / max(1, args.links)))
        for i, agent in enumerate(agents.values())
    ]
    tasks.append(asyncio.create_task(report(agents)))
    stdin = asyncio.StreamReader()
    loop = asyncio.get_running_loop()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stdin), sys.stdin)
    try:
        await stdin.read()  # the driver is done when it closes our stdin
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.gather(*(c.channel.close() for c in channels), return_exceptions=True)
        print(f"ran {time.monotonic() - started:.1f} s", file=sys.stderr, flush=True)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--target", required=True, help="HOST:PORT of the gateway")
    parser.add_argument("--user", required=True)
    parser.add_argument("--first", type=int, default=0, help="number of the first device")
    parser.add_argument("--links", type=int, required=True, help="devices of this process")
    parser.add_argument("--channels", type=int, default=4, help="shared connections (4)")
    parser.add_argument(
        "--open-rate", type=float, default=0, help="links opened a second at start (0: all)"
    )
    return parser.parse_args()


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    asyncio.run(main(parse_args()))
