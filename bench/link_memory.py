"""Connected devices on one server: memory per link, and every link answering a call.

Starts a real `thingwire serve` (SQLite in a temp dir, server + Envoy on free ports), writes
the devices straight into its database, then has load-generator processes
(`bench/link_load.py`, the agent's own code) open `--links` links through the gateway, each
declaring a resource and answering calls like an agent. Once all are up and have rested, it
reads the resident set size (VmRSS) of the server and of Envoy, then calls every device
once through REST via Envoy (`GET /v2/users/bench/devices/benchN/ping`), in random order at
`--rate` calls/s (open loop), and records the latency distribution.

    .venv/bin/python -m bench.link_memory [--links 10000] [--rate 500] [--quick]

The links share HTTP/2 connections (at most 640 streams on each; Envoy allows 1,024), and
open with a link secret, as a fleet does when it comes back after a restart.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import tempfile
import time
from pathlib import Path

from bench.fleet import (
    STOP_TIMEOUT_S,
    Fleet,
    Rest,
    add_fleet_arguments,
    bearer_token,
    create_devices,
    envoy_pid,
    fleet_size,
    latency_summary,
    rss_kib,
    start_stack,
    sweep,
)

#: link_ingest.py and resource_calls.py take these from here.
__all__ = ["create_devices", "envoy_pid", "main"]

#: Links opened and closed before the baseline, so that what the first link of any run
#: brings (database connections, code paths run once) is in the baseline, not per link.
WARMUP_LINKS = 50
SETTLE_SECONDS = 3.0
LINKS_TARGET = "10,000 links"
MEMORY_TARGET = "<= 50 KB/link"


async def run(
    links: int, processes: int, rate: float, open_rate: float, server_checkout: Path | None = None
) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as tmp:
        stack = start_stack(Path(tmp), links, server_checkout)
        try:
            assert stack.process is not None
            server, envoy = stack.process.pid, envoy_pid(stack.process.pid)
            rest = Rest(stack.base_url, bearer_token(stack))
            warmup = Fleet(stack.grpc_target, WARMUP_LINKS, 1)
            await warmup.start()
            await warmup.wait_up(60)
            await sweep(rest, list(range(WARMUP_LINKS)), rate)
            await warmup.stop()
            await asyncio.sleep(SETTLE_SECONDS)
            server0, envoy0 = rss_kib(server), rss_kib(envoy)
            fleet = Fleet(stack.grpc_target, links, processes)
            await fleet.start(open_rate)
            try:
                open_s = await fleet.wait_up(300)
                await asyncio.sleep(SETTLE_SECONDS)
                server1, envoy1 = rss_kib(server), rss_kib(envoy)
                load_kib = sum(rss_kib(pid) for pid in fleet.pids)
                order = list(range(links))
                random.shuffle(order)
                started = time.monotonic()
                calls = await sweep(rest, order, rate)
                sweep_s = time.monotonic() - started
                server2, envoy2 = rss_kib(server), rss_kib(envoy)
                up_after = fleet.up
            finally:
                await fleet.stop()
                rest.close()
        finally:
            stack.stop(timeout=STOP_TIMEOUT_S)
    return {
        "links": links,
        "open_s": round(open_s, 1),
        "server_mib": [round(v / 1024, 1) for v in (server0, server1, server2)],
        "envoy_mib": [round(v / 1024, 1) for v in (envoy0, envoy1, envoy2)],
        "server_kib_per_link": round((server1 - server0) / links, 1),
        "server_kib_per_link_after_calls": round((server2 - server0) / links, 1),
        "envoy_kib_per_link": round((envoy1 - envoy0) / links, 1),
        "envoy_kib_per_link_after_calls": round((envoy2 - envoy0) / links, 1),
        "load_generator_mib": round(load_kib / 1024, 1),
        "calls_ok": len(calls.latencies),
        "call_failures": calls.failures,
        "calls_over_1s": sum(1 for t in calls.latencies if t > 1.0),
        "sweep_s": round(sweep_s, 1),
        "rate": rate,
        "up_after_calls": up_after,
        **latency_summary(calls.latencies),
    }


def figures(result: dict[str, object]) -> list[dict[str, object]]:
    links, ok, late = (int(str(result[k])) for k in ("links", "calls_ok", "calls_over_1s"))
    answered = 100.0 * (ok - late) / links
    return [
        {"name": f"server memory per link, {links} links answering calls", "unit": "KiB/link",
         "value": result["server_kib_per_link_after_calls"], "target": MEMORY_TARGET},
        {"name": f"Envoy memory per link, {links} links", "unit": "KiB/link",
         "value": result["envoy_kib_per_link_after_calls"], "target": None},
        {"name": f"links answering a call within 1 s, {links} links", "unit": "%",
         "value": round(answered, 2), "target": f"100% of {LINKS_TARGET}"},
        {"name": f"call latency p50, {links} links", "unit": "ms", "value": result["p50_ms"],
         "target": None},
        {"name": f"call latency p99, {links} links", "unit": "ms", "value": result["p99_ms"],
         "target": "<= 1000 ms"},
        {"name": f"call latency max, {links} links", "unit": "ms", "value": result["max_ms"],
         "target": "<= 1000 ms"},
    ]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    add_fleet_arguments(parser)
    parser.add_argument("--rate", type=float, default=200, help="REST calls a second in the sweep")
    args = parser.parse_args()
    links, processes = fleet_size(args)
    result = asyncio.run(run(links, processes, args.rate, args.open_rate, args.server_checkout))
    print(json.dumps(result), flush=True)
    print(json.dumps({"bench": "link_memory", "figures": figures(result)}), flush=True)


if __name__ == "__main__":
    main()
