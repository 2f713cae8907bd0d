"""One device for `bench/link_ingest.py`: a link that uploads pre-built batches.

It opens a link as an agent does (Hello with a link secret, Welcome), builds its batches
before the start (seed-shaped `track.pos` / `obd.bat` records with fresh timestamps, the
bytes ready to send), says `ready` on stdout and waits for a line on stdin. Then it keeps
the Welcome's `max_uploads_in_flight` uploads in flight until every batch is acknowledged
and prints one JSON line: records stored, repeats, failures, start and end (epoch s).

    python -m bench.ingest_load --target 127.0.0.1:8080 --user bench --device 3 \
        --batches 50 --batch-records 500
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time

import grpc
import orjson
from thingwire.agent.v1 import agent_pb2, agent_pb2_grpc

from bench.link_load import DEVICE, SECRET

#: Timestamps start here and step by a microsecond per record of this device.
EPOCH_US = 1_780_000_000_000_000


def batches(device: int, count: int, size: int) -> list[bytes]:
    """`count` batches of `size` records, every (type, time) new."""
    built = []
    n = 0
    for _ in range(count):
        items = []
        for _ in range(size):
            us = EPOCH_US + n
            seconds, micros = divmod(us, 1_000_000)
            ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{micros:06d}Z"
            if n % 10:
                items.append(
                    {
                        "@t": "track.pos",
                        "@ts": ts,
                        "utc": ts[11:19],
                        "cog": 140.22,
                        "nsat": 9,
                        "alt": 34,
                        "sog": 0,
                        "loc": {"lat": 57.02241, "lon": 9.89919 + device * 1e-3},
                    }
                )
            else:
                items.append(
                    {"@t": "obd.bat", "@ts": ts, "voltage": 12.6, "state": "ok", "level": 90}
                )
            n += 1
        built.append(orjson.dumps(items))
    return built


async def main(args: argparse.Namespace) -> None:
    bodies = batches(args.device, args.batches, args.batch_records)
    async with grpc.aio.insecure_channel(args.target) as channel:
        call = agent_pb2_grpc.AgentServiceStub(channel).Connect()
        hello = agent_pb2.Hello(
            user=args.user,
            device=DEVICE.format(n=args.device),
            link_secret=SECRET.format(n=args.device),
        )
        await call.write(agent_pb2.ConnectRequest(hello=hello))
        first = await call.read()
        assert isinstance(first, agent_pb2.ConnectResponse)
        if not first.HasField("welcome"):
            raise RuntimeError(f"no Welcome: {first!r}")
        in_flight = max(1, first.welcome.max_uploads_in_flight)
        print("ready", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        started = time.time()
        waiting: list[int] = list(range(len(bodies)))
        sent = stored = repeats = failures = 0
        outstanding = 0
        done = 0
        while done < len(bodies):
            while waiting and outstanding < in_flight:
                index = waiting.pop(0)
                upload = agent_pb2.Upload(batch_id=f"b{index}", records=bodies[index])
                await call.write(agent_pb2.ConnectRequest(upload=upload))
                sent += 1
                outstanding += 1
            answer = await call.read()
            assert isinstance(answer, agent_pb2.ConnectResponse)
            outstanding -= 1
            if answer.HasField("upload_ack"):
                stored += answer.upload_ack.stored
                repeats += answer.upload_ack.repeats
                done += 1
            elif answer.upload_failed.failure == agent_pb2.UPLOAD_FAILURE_TOO_LARGE:
                raise SystemExit(f"batches too large for the server: {answer.upload_failed}")
            else:  # sent again, as an agent would
                failures += 1
                waiting.append(int(answer.upload_failed.batch_id[1:]))
                await asyncio.sleep(answer.upload_failed.retry_after_ms / 1000)
        ended = time.time()
        call.cancel()
    print(
        json.dumps(
            {
                "stored": stored,
                "repeats": repeats,
                "failures": failures,
                "uploads": sent,
                "started": started,
                "ended": ended,
            }
        ),
        flush=True,
    )


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--target", required=True)
    parser.add_argument("--user", required=True)
    parser.add_argument("--device", type=int, required=True)
    parser.add_argument("--batches", type=int, default=50)
    parser.add_argument("--batch-records", type=int, default=500)
    return parser.parse_args()


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
