"""Load generator for `bench/resource_calls.py`: resource calls at a fixed rate, or flat out.

It runs in its own process, so that its CPU is its own and the driver's bookkeeping never
delays a call. It reads phases from stdin, one JSON object a line, and answers each on
stdout with a line `start` just before its first call and then one JSON line of results:

    {"face": "rest", "mode": "rate", "rate": 250, "duration": 8}
    {"face": "grpc-direct", "mode": "closed", "concurrency": 16, "duration": 5}

Faces: `rest` (Thinger's REST paths through Envoy, HTTP/1.1 keep-alive connections with a
Bearer JWT, from a minimal client: see HttpConnection), `grpc-envoy` (the generated
ResourceService stubs through Envoy's port) and `grpc-direct` (the same stubs on the
server's own port). The calls alternate between the simulated device's `temperature` (an
output: GET, GetResource) and `io` (input/output: POST `{"in":{"value1":20,"value2":10}}`,
CallResource).

`rate` is open-loop: call i is due at t0 + i/rate whatever happened to the calls before
it, and its latency counts from when it was due (or from when it went out, if the timer
sent it a little early), so a server that falls behind shows its queue in the figures
instead of slowing the generator down (no coordinated omission). `closed` runs
`concurrency` callers that each send the next call when the last one answered: the
saturation throughput.

    python -m bench.resource_load --rest-url http://127.0.0.1:8080 --grpc-envoy 127.0.0.1:8080 \
        --grpc-direct 127.0.0.1:50051 --token JWT --user bench --device bench
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import math
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import grpc
from google.protobuf import struct_pb2
from thingwire.resources.v1 import resources_pb2, resources_pb2_grpc

FACES = ("rest", "grpc-envoy", "grpc-direct")
IO_INPUT = {"value1": 20, "value2": 10}
IO_BODY = json.dumps({"in": IO_INPUT}, separators=(",", ":")).encode()
#: Each call's own timeout; the server's default call deadline is 10 s.
CALL_TIMEOUT_S = 10.0
#: HTTP/1.1 carries one request at a time per connection: enough connections for the queue
#: an overloaded phase builds (the device's own limit on calls in flight is 64).
REST_CONNECTIONS = 128
#: The timer may send a call this much before it is due rather than sleep past it: epoll
#: wakes with millisecond granularity, and a late timer would count as the server's delay.
EARLY_S = 0.0005

#: One call, given its number (even: temperature, odd: io); raises CallFailed or OSError.
Call = Callable[[int], Awaitable[None]]


class CallFailed(Exception):
    """A call that answered, but not with success (the label names what it answered)."""


class HttpConnection(asyncio.Protocol):
    """One HTTP/1.1 keep-alive connection carrying one request at a time.

    A few dozen lines instead of an HTTP library: on two shared cores a full client costs
    more CPU per call than the server does (httpx measured about 2 ms per call here), and
    that cost would land in the REST figures as latency. It sends prepared bytes and reads
    a response framed by Content-Length or chunked, which is all Envoy answers here.
    """

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.waiter: asyncio.Future[tuple[int, bytes]] | None = None
        self.reusable = True

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.reusable = False
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionResetError("connection closed mid-response"))

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if self.waiter is not None and not self.waiter.done():
            response = self._response()
            if response is not None:
                self.waiter.set_result(response)

    async def request(self, raw: bytes) -> tuple[int, bytes]:
        """Send one request; its status and body."""
        assert self.transport is not None
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(raw)
        return await self.waiter

    def close(self) -> None:
        self.reusable = False
        if self.transport is not None:
            self.transport.close()

    def _response(self) -> tuple[int, bytes] | None:
        """The complete response at the start of the buffer, taken out of it; None if more
        bytes are needed."""
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return None
        status_line, *lines = bytes(self.buffer[:end]).decode("latin-1").split("\r\n")
        headers = {}
        for line in lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip().lower()
        start = end + 4
        if "content-length" in headers:
            stop = start + int(headers["content-length"])
            if len(self.buffer) < stop:
                return None
            body = bytes(self.buffer[start:stop])
        elif headers.get("transfer-encoding") == "chunked":
            chunked = self._chunked(start)
            if chunked is None:
                return None
            body, stop = chunked
        else:
            raise CallFailed(f"response without framing: {status_line}")
        del self.buffer[:stop]
        if headers.get("connection") == "close":
            self.reusable = False
        return int(status_line.split(" ", 2)[1]), body

    def _chunked(self, pos: int) -> tuple[bytes, int] | None:
        body = bytearray()
        while True:
            line_end = self.buffer.find(b"\r\n", pos)
            if line_end < 0:
                return None
            size = int(bytes(self.buffer[pos:line_end]).split(b";")[0], 16)
            pos = line_end + 2
            if len(self.buffer) < pos + size + 2:
                return None
            if size == 0:  # no trailers: the last chunk's empty line ends the body
                return bytes(body), pos + 2
            body += self.buffer[pos : pos + size]
            pos += size + 2


class HttpPool:
    """Keep-alive connections to one host, opened as needed up to `limit`, reused LIFO."""

    def __init__(self, host: str, port: int, limit: int) -> None:
        self.host, self.port = host, port
        self.idle: list[HttpConnection] = []
        self.slots = asyncio.Semaphore(limit)

    async def request(self, raw: bytes) -> tuple[int, bytes]:
        async with self.slots:
            if self.idle:
                connection = self.idle.pop()
            else:
                _, connection = await asyncio.get_running_loop().create_connection(
                    HttpConnection, self.host, self.port
                )
            try:
                async with asyncio.timeout(CALL_TIMEOUT_S):
                    answer = await connection.request(raw)
            except BaseException:
                connection.close()  # its response may still come: never reuse it
                raise
            if connection.reusable:
                self.idle.append(connection)
            return answer

    def close(self) -> None:
        for connection in self.idle:
            connection.close()


@dataclass
class Faces:
    """The clients of the three faces, connected once and kept for the whole run."""

    rest: HttpPool
    rest_read: bytes
    rest_io: bytes
    envoy: resources_pb2_grpc.ResourceServiceStub
    direct: resources_pb2_grpc.ResourceServiceStub
    channels: list[grpc.aio.Channel]
    user: str
    device: str
    metadata: tuple[tuple[str, str], ...]
    io_input: struct_pb2.Value = field(default_factory=struct_pb2.Value)

    def call(self, face: str) -> Call:
        """The face's call: even numbers read temperature, odd ones run io."""
        if face == "rest":
            return self._rest
        stub = self.envoy if face == "grpc-envoy" else self.direct

        async def grpc_call(n: int) -> None:
            try:
                if n % 2 == 0:
                    await stub.GetResource(
                        resources_pb2.GetResourceRequest(
                            user_id=self.user, device_id=self.device, resource="temperature"
                        ),
                        metadata=self.metadata,
                        timeout=CALL_TIMEOUT_S,
                    )
                else:
                    answer = await stub.CallResource(
                        resources_pb2.CallResourceRequest(
                            user_id=self.user,
                            device_id=self.device,
                            resource="io",
                            input=self.io_input,
                        ),
                        metadata=self.metadata,
                        timeout=CALL_TIMEOUT_S,
                    )
                    if answer.out.struct_value.fields["sum"].number_value != 30:
                        raise CallFailed("wrong io output")
            except grpc.aio.AioRpcError as error:
                raise CallFailed(error.code().name) from None

        return grpc_call

    async def _rest(self, n: int) -> None:
        status, body = await self.rest.request(self.rest_read if n % 2 == 0 else self.rest_io)
        if status != 200:
            raise CallFailed(f"HTTP {status}")
        if n % 2 == 1 and b'"sum":30' not in body:
            raise CallFailed(f"wrong io output {body!r}")

    async def close(self) -> None:
        self.rest.close()
        for channel in self.channels:
            await channel.close()


@dataclass
class Tally:
    """What one phase's calls did."""

    #: (kind, latency s, lag s): lag is how late the call went out (negative: early).
    done: list[tuple[int, float, float]] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)

    async def timed(self, call: Call, n: int, due: float) -> None:
        sent = time.perf_counter()
        try:
            await call(n)
        except CallFailed as error:
            self.errors[str(error)] += 1
            return
        except (OSError, TimeoutError) as error:
            self.errors[type(error).__name__] += 1
            return
        self.done.append((n % 2, time.perf_counter() - min(due, sent), sent - due))


async def open_loop(call: Call, rate: float, duration: float) -> tuple[Tally, float]:
    """`rate` calls a second for `duration` seconds, each due at its time; and the wall time
    from the first call's due time to the last answer."""
    tally = Tally()
    count = round(rate * duration)
    interval = 1.0 / rate
    tasks = []
    t0 = time.perf_counter() + 0.01
    for n in range(count):
        due = t0 + n * interval
        ahead = due - time.perf_counter() - EARLY_S
        if ahead > 0:
            await asyncio.sleep(ahead)
        tasks.append(asyncio.create_task(tally.timed(call, n, due)))
    await asyncio.gather(*tasks)
    return tally, time.perf_counter() - t0


async def closed_loop(call: Call, concurrency: int, duration: float) -> tuple[Tally, float]:
    """`concurrency` callers, each sending its next call when its last one answered."""
    tally = Tally()
    start = time.perf_counter()
    end = start + duration
    numbers = iter(range(sys.maxsize))

    async def caller() -> None:
        while time.perf_counter() < end:
            await tally.timed(call, next(numbers), time.perf_counter())

    await asyncio.gather(*(caller() for _ in range(concurrency)))
    return tally, time.perf_counter() - start


def percentile(ordered: list[float], q: float) -> float:
    """Nearest-rank percentile of an ascending list, in ms (0 for an empty list)."""
    if not ordered:
        return 0.0
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))] * 1000


def summary(phase: dict[str, Any], tally: Tally, wall: float) -> dict[str, Any]:
    latencies = sorted(latency for _, latency, _ in tally.done)
    lags = sorted(lag for _, _, lag in tally.done)
    by_kind = {
        name: sorted(latency for kind, latency, _ in tally.done if kind == k)
        for k, name in ((0, "read"), (1, "io"))
    }
    return {
        **phase,
        "ok": len(tally.done),
        "errors": dict(tally.errors),
        "wall_s": wall,
        "achieved": len(tally.done) / wall,
        "p50": percentile(latencies, 0.50),
        "p90": percentile(latencies, 0.90),
        "p99": percentile(latencies, 0.99),
        "max": percentile(latencies, 1.0),
        "p50_read": percentile(by_kind["read"], 0.50),
        "p50_io": percentile(by_kind["io"], 0.50),
        "lag_p99": percentile(lags, 0.99),
    }


def http_request(method: str, host: str, path: str, bearer: str, body: bytes = b"") -> bytes:
    """The bytes of one HTTP/1.1 request, prepared once and sent for every call."""
    head = [f"{method} {path} HTTP/1.1", f"Host: {host}", f"Authorization: {bearer}"]
    if method == "POST":
        head += ["Content-Type: application/json;charset=UTF-8", f"Content-Length: {len(body)}"]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


async def connect(args: argparse.Namespace) -> Faces:
    bearer = f"Bearer {args.token}"
    url = urlsplit(args.rest_url)
    assert url.hostname is not None
    assert url.port is not None
    path = f"/v2/users/{args.user}/devices/{args.device}"
    channels = [
        grpc.aio.insecure_channel(args.grpc_envoy),
        grpc.aio.insecure_channel(args.grpc_direct),
    ]
    for channel in channels:
        await asyncio.wait_for(channel.channel_ready(), 10)
    faces = Faces(
        rest=HttpPool(url.hostname, url.port, REST_CONNECTIONS),
        rest_read=http_request("GET", url.netloc, f"{path}/temperature", bearer),
        rest_io=http_request("POST", url.netloc, f"{path}/io", bearer, IO_BODY),
        envoy=resources_pb2_grpc.ResourceServiceStub(channels[0]),
        direct=resources_pb2_grpc.ResourceServiceStub(channels[1]),
        channels=channels,
        user=args.user,
        device=args.device,
        metadata=(("authorization", bearer),),
    )
    for key, number in IO_INPUT.items():
        faces.io_input.struct_value.fields[key].number_value = number
    return faces


async def main(args: argparse.Namespace) -> None:
    faces = await connect(args)
    stdin = asyncio.StreamReader()
    loop = asyncio.get_running_loop()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stdin), sys.stdin)
    gc.freeze()  # what was set up is long-lived: keep it out of the collector's way
    print("ready", flush=True)
    try:
        while line := await stdin.readline():
            phase = json.loads(line)
            call = faces.call(phase["face"])
            print("start", flush=True)
            if phase["mode"] == "rate":
                tally, wall = await open_loop(call, phase["rate"], phase["duration"])
            else:
                tally, wall = await closed_loop(call, phase["concurrency"], phase["duration"])
            print(json.dumps(summary(phase, tally, wall)), flush=True)
    finally:
        await faces.close()


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rest-url", required=True, help="the gateway's base URL")
    parser.add_argument("--grpc-envoy", required=True, help="HOST:PORT of the gateway")
    parser.add_argument("--grpc-direct", required=True, help="HOST:PORT of the server")
    parser.add_argument("--token", required=True, help="a Bearer JWT of the device's owner")
    parser.add_argument("--user", required=True)
    parser.add_argument("--device", required=True)
    return parser.parse_args()


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
