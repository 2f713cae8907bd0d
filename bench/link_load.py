"""Load generator for `bench/link_memory.py`: holds many device links open from one process.

Each link is what an agent opens: a Connect stream, a Hello with a link secret, the
Welcome, then an open stream that waits. Links share `--channels` gRPC channels (a link is a
normal HTTP/2 stream, so many share one connection), or with `--per-device` each has its
own channel and TCP connection, as real devices do.

It opens links in steps and reports on stdout, one line per step, `open <links>`; then it
waits for a line on stdin before the next step, and for end of input before closing all.

    python -m bench.link_load --target 127.0.0.1:8080 --user bench --steps 1000,2000
"""

from __future__ import annotations

import argparse
import asyncio
import sys

import grpc
from thingwire.agent.v1 import agent_pb2, agent_pb2_grpc

#: Device ids and link secrets follow one pattern, which link_memory.py writes.
DEVICE = "bench{n}"
SECRET = "bench-link-secret-{n}"  # noqa: S105 - throwaway devices in a temp database
#: Opens in flight at once: enough to be quick, few enough not to look like a storm.
OPENING_AT_ONCE = 64


def channel(target: str, own_connection: bool) -> grpc.aio.Channel:
    # Channels to one target share their connection unless each has its own subchannel pool.
    options = [("grpc.use_local_subchannel_pool", 1)] if own_connection else []
    return grpc.aio.insecure_channel(target, options=options)


async def open_link(
    stub: agent_pb2_grpc.AgentServiceStub, user: str, n: int, gate: asyncio.Semaphore
) -> grpc.aio.StreamStreamCall:
    async with gate:
        call = stub.Connect()
        hello = agent_pb2.Hello(
            user=user, device=DEVICE.format(n=n), link_secret=SECRET.format(n=n)
        )
        await call.write(agent_pb2.ConnectRequest(hello=hello))
        first = await call.read()
        if not isinstance(first, agent_pb2.ConnectResponse) or not first.HasField("welcome"):
            raise RuntimeError(f"device {n}: no Welcome ({first!r})")
        return call


async def main(args: argparse.Namespace) -> None:
    steps = [int(step) for step in args.steps.split(",")]
    gate = asyncio.Semaphore(OPENING_AT_ONCE)
    shared = [channel(args.target, own_connection=True) for _ in range(args.channels)]
    channels: list[grpc.aio.Channel] = list(shared)
    calls: list[grpc.aio.StreamStreamCall] = []
    stdin = asyncio.StreamReader()
    loop = asyncio.get_running_loop()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stdin), sys.stdin)
    try:
        for step in steps:
            opening = []
            for n in range(len(calls), step):
                if args.per_device:
                    channels.append(channel(args.target, own_connection=True))
                    chan = channels[-1]
                else:
                    chan = shared[n % len(shared)]
                stub = agent_pb2_grpc.AgentServiceStub(chan)
                opening.append(open_link(stub, args.user, n, gate))
            calls += await asyncio.gather(*opening)
            print(f"open {len(calls)}", flush=True)
            await stdin.readline()  # the driver has measured; an empty read is its end
        await stdin.read()
    finally:
        for call in calls:
            call.cancel()
        await asyncio.gather(*(c.close() for c in channels), return_exceptions=True)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--target", required=True, help="HOST:PORT of the gateway")
    parser.add_argument("--user", required=True)
    parser.add_argument("--steps", required=True, help="links open after each step, e.g. 1000,2000")
    parser.add_argument("--channels", type=int, default=8, help="shared channels (default 8)")
    parser.add_argument("--per-device", action="store_true", help="one connection per link")
    return parser.parse_args()


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
