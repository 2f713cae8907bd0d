"""What a resource call costs when it crosses NATS to another replica, against a local one.

Starts `thingwire serve --replicas 2` (a throwaway PostgreSQL database, a nats-server of its
own on a free port, Envoy and the replicas on free ports) and one `thingwire agent
--simulate` connected straight to replica 0's gRPC port, so replica 0 holds the link for
certain. Two load generators (`bench/resource_load.py`, the `grpc-direct` face) call the
device's `temperature` and `io` resources, one on replica 0 (local: no NATS hop) and one on
replica 1 (routed: replica 1 asks replica 0 over NATS request-reply). The two sides take
turns, phase by phase and round by round (the order flips each round), so the drifts of a
shared machine fall on both alike: an open-loop phase at a fixed rate (p50, p99) and a
closed-loop phase (calls/s at saturation) per side and round; the figures are medians.

    .venv/bin/python -m bench.routed_calls [--rate 500] [--duration 6] [--rounds 3]
        [--saturation-seconds 4] [--concurrency 16] [--quick]

The last line of stdout is the `make bench` JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from bench.fleet import child_pids, envoy_pid
from bench.resource_calls import (
    CREDENTIALS,
    DEVICE,
    PASSWORD,
    USER,
    LoadGenerator,
    Processes,
    bearer_token,
)
from tests.integration.agents import AgentProcess
from tests.integration.stack import Stack
from tests.nats_process import NatsProcess
from tests.support import consecutive_free_ports

PG_DSN = os.environ.get(
    "THINGWIRE_TEST_PG_DSN", "host=127.0.0.1 port=5432 user=postgres dbname=postgres"
)
SIDES = ("local", "routed")
LABELS = {"local": "local replica", "routed": "routed through NATS"}
WARMUP = {"mode": "rate", "rate": 100, "duration": 2.0}


@dataclass
class ReplicaProcesses(Processes):
    """`server` is replica 0 (it holds the link); `other` is replica 1."""

    other: int


def cpu_us_per_call(result: dict[str, Any]) -> str:
    """CPU µs per call of each process: replica 0 / replica 1 / Envoy / agent / client."""
    calls = max(1, result["ok"])
    cpu = result["cpu"]
    names = ("server", "other", "envoy", "agent", "load")
    return " / ".join(f"{cpu[name] / calls * 1e6:.0f}" for name in names)


def run(generator: LoadGenerator, phase: dict[str, Any], processes: Processes) -> dict[str, Any]:
    return generator.run({"face": "grpc-direct", **phase}, processes)


def replica_pids(supervisor: int) -> dict[int, int]:
    """The replicas' pids by index (children of `serve --replicas`)."""
    pids = {}
    for child in child_pids(supervisor):
        args = Path(f"/proc/{child}/cmdline").read_text().split("\0")
        if "--replica-index" in args:
            pids[int(args[args.index("--replica-index") + 1])] = child
    return pids


def median(results: list[dict[str, Any]], key: str) -> float:
    return float(statistics.median(r[key] for r in results))


def measure(args: argparse.Namespace, stack: Stack) -> dict[str, dict[str, list[dict[str, Any]]]]:
    """Rounds of both sides, alternating; every phase's results by side and kind."""
    stack.cli("user", "create", "--email", "b@example.com", "--password", PASSWORD,
              "--username", USER)  # fmt: skip
    stack.cli("device", "create", "--user", USER, "--device", DEVICE, "--credentials", CREDENTIALS)
    agent = AgentProcess(
        stack, USER, DEVICE, CREDENTIALS, simulate=True, server=f"127.0.0.1:{stack.grpc_port}"
    )
    generators: dict[str, LoadGenerator] = {}
    try:
        agent.start()
        agent.wait_connected()
        token = bearer_token(stack)
        generators = {
            side: LoadGenerator(stack, token, f"127.0.0.1:{stack.grpc_port + index}")
            for index, side in enumerate(SIDES)
        }
        assert stack.process is not None
        assert agent.process is not None
        replicas = replica_pids(stack.process.pid)
        pids = {
            side: ReplicaProcesses(
                server=replicas[0],
                envoy=envoy_pid(stack.process.pid),
                agent=agent.process.pid,
                load=generator.process.pid,
                other=replicas[1],
            )
            for side, generator in generators.items()
        }
        for side, generator in generators.items():
            warm = run(generator, WARMUP, pids[side])
            # Throttling (429) is load, when a shared machine stalls the holder; anything
            # else, or no answer at all, means the stack is not right.
            if not warm["ok"] or set(warm["errors"]) - {"RESOURCE_EXHAUSTED"}:
                raise RuntimeError(f"warm-up of the {side} side failed: {warm['errors']}")
        results: dict[str, dict[str, list[dict[str, Any]]]] = {
            side: {"rate": [], "closed": []} for side in SIDES
        }
        for round_number in range(args.rounds):
            order = SIDES if round_number % 2 == 0 else SIDES[::-1]
            for side in order:
                phase = {"mode": "rate", "rate": args.rate, "duration": args.duration}
                results[side]["rate"].append(run(generators[side], phase, pids[side]))
            for side in order:
                phase = {
                    "mode": "closed",
                    "concurrency": args.concurrency,
                    "duration": args.saturation_seconds,
                }
                results[side]["closed"].append(run(generators[side], phase, pids[side]))
        return results
    finally:
        for generator in generators.values():
            generator.close()
        if agent.process is not None:
            agent.__exit__()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rate", type=int, default=500, help="open-loop rate, calls/s")
    parser.add_argument("--duration", type=float, default=6.0, help="seconds per rate phase")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--saturation-seconds", type=float, default=4.0)
    parser.add_argument("--concurrency", type=int, default=16, help="callers at saturation")
    parser.add_argument("--quick", action="store_true", help="one short round")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.duration, args.saturation_seconds = 1, 3.0, 2.0
    started = time.monotonic()
    admin = psycopg.connect(PG_DSN, autocommit=True, connect_timeout=5)
    name = f"thingwire_bench_{secrets.token_hex(6)}"
    admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    info = admin.info
    with tempfile.TemporaryDirectory() as tmp:
        nats = NatsProcess(Path(tmp))
        nats.start()
        stack = Stack(
            workdir=Path(tmp) / "stack",
            db_url=f"postgresql://{info.user}@{info.host}:{info.port}/{name}",
            grpc_port=consecutive_free_ports(len(SIDES)),
            serve_args=("--replicas", str(len(SIDES))),
            extra_env={"THINGWIRE_NATS_URL": nats.url},
        )
        try:
            stack.start()
            results = measure(args, stack)
        except Exception:
            if (stack.workdir / "serve.err").exists():
                print(stack.logs()[-3000:], file=sys.stderr)
            raise
        finally:
            if stack.process is not None:
                stack.stop()
            nats.stop()
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )
            admin.close()
    print_report(args, results, time.monotonic() - started)


def print_report(
    args: argparse.Namespace, results: dict[str, dict[str, list[dict[str, Any]]]], wall_s: float
) -> None:
    print(
        f"Routed resource calls: gRPC straight to each replica of `serve --replicas 2`, "
        f"{args.rounds} rounds alternating local / routed, {args.duration:g} s at "
        f"{args.rate}/s and {args.saturation_seconds:g} s with {args.concurrency} callers per "
        f"side and round; medians; {wall_s:.0f} s in all"
    )
    print("| side | achieved/s | p50 ms | p99 ms | failed | calls/s at saturation | p50 ms there |")
    print("|---|---:|---:|---:|---|---:|---:|")
    figures: list[dict[str, Any]] = []
    for side in SIDES:
        rated, closed = results[side]["rate"], results[side]["closed"]
        failed: dict[str, int] = {}
        for r in rated + closed:
            for what, count in r["errors"].items():
                failed[what] = failed.get(what, 0) + count
        failures = ", ".join(f"{count} {what}" for what, count in failed.items()) or "0"
        print(
            f"| {LABELS[side]} | {median(rated, 'achieved'):.0f} | {median(rated, 'p50'):.2f} "
            f"| {median(rated, 'p99'):.2f} | {failures} | {median(closed, 'achieved'):.0f} "
            f"| {median(closed, 'p50'):.2f} | {cpu_us_per_call(rated[len(rated) // 2])} |"
        )
    local = "resource call, local replica"
    routed = "resource call, routed through NATS"
    for side, name in (("local", local), ("routed", routed)):
        rated, closed = results[side]["rate"], results[side]["closed"]
        ratio = {"ratio_to": f"{local}, {{}}"} if side == "routed" else {}
        for key, label, unit, target in (
            ("p50", f"p50 at {args.rate}/s", "ms", "<= 2 ms" if side == "local" else None),
            ("p99", f"p99 at {args.rate}/s", "ms", "<= 10 ms" if side == "local" else None),
        ):
            figure: dict[str, Any] = {
                "name": f"{name}, {label}",
                "value": round(median(rated, key), 3),
                "unit": unit,
                "target": target,
            }
            if ratio:
                figure["ratio_to"] = ratio["ratio_to"].format(label)
            figures.append(figure)
        saturation: dict[str, Any] = {
            "name": f"{name}, calls/s at saturation",
            "value": round(median(closed, "achieved"), 1),
            "unit": "calls/s",
            "target": ">= 1500 calls/s" if side == "local" else None,
        }
        if ratio:
            saturation["ratio_to"] = f"{local}, calls/s at saturation"
        figures.append(saturation)
    load_average = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    print(f"<!-- {os.cpu_count()} CPUs, load average at the end {load_average} -->")
    print(json.dumps({"bench": "routed_calls", "figures": figures}))


if __name__ == "__main__":
    main()
