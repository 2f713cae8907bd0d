"""Server and Envoy CPU per HTTP push, this tree beside another checkout, from /proc.

The rate of a push depends on what else loads the machine; the CPU each post costs the
server process (all its threads) and Envoy hardly does. This starts a SQLite stack of this
tree and, with ``--before TREE``, one of another checkout's code (its modules first on
``PYTHONPATH``), makes 20 devices on each, and runs wrk (`bench.ingest_http`'s script:
the firmware's ``authorization: token …``, fresh records) on ``POST /logbook/storage``,
alternating the stacks round by round. Every phase checks that each 2xx was stored.

    .venv/bin/python -m bench.push_cpu --before ../main   # 5 rounds of 5 s; --quick: 3 of 3 s
    .venv/bin/python -m bench.push_cpu --sizes 1,100 --rounds 7

docs/benchmarks.md, "Per-post cost of the push".
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.ingest_http import Target, count_rows, make_devices, run_wrk
from bench.link_memory import envoy_pid
from bench.unary_http import comparison_args, process_cpu, started, tree_env
from tests.integration.stack import Stack

WARMUP_SECONDS = 1.0


@dataclass
class Side:
    """One stack: this tree's code (``tree`` None) or another checkout's."""

    label: str
    tree: Path | None
    stack: Stack | None = None
    tokens: list[str] = field(default_factory=list)
    pids: tuple[int, int] = (0, 0)
    #: Per size: posts/s, server CPU µs per post, Envoy CPU µs per post, one per round.
    rates: dict[int, list[float]] = field(default_factory=dict)
    server_us: dict[int, list[float]] = field(default_factory=dict)
    envoy_us: dict[int, list[float]] = field(default_factory=dict)


def start(side: Side, workdir: Path) -> None:
    env = tree_env(side.tree)
    db_url = f"sqlite:///{workdir}/bench.db"
    side.stack = Stack(workdir=workdir / "stack", db_url=db_url, extra_env=env)
    side.stack.start()
    assert side.stack.process is not None
    server = side.stack.process.pid
    side.pids = (server, envoy_pid(server))
    side.tokens = make_devices(db_url)


def phase(side: Side, size: int, workdir: Path, args: Any) -> None:
    """One measured wrk run of `size` records a post on `side`."""
    assert side.stack is not None
    target = Target(side.stack.base_url)
    rows = count_rows(side.stack.db_url)
    before = [process_cpu(pid) for pid in side.pids]
    figures = run_wrk(target, workdir, side.tokens, size, args.duration, args.connections)
    server_s, envoy_s = (process_cpu(pid) - b for pid, b in zip(side.pids, before, strict=True))
    time.sleep(0.3)  # answers wrk stopped waiting for may still commit
    acknowledged = figures["requests"] - figures["status_errors"]
    stored = count_rows(side.stack.db_url) - rows
    if figures["status_errors"] or not acknowledged * size <= stored:
        raise RuntimeError(f"{side.label}: {stored} rows for {acknowledged} posts: {figures}")
    posts = figures["requests"]
    side.rates.setdefault(size, []).append(posts / (figures["duration_us"] / 1e6))
    side.server_us.setdefault(size, []).append(server_s / posts * 1e6)
    side.envoy_us.setdefault(size, []).append(envoy_s / posts * 1e6)


def measure(sides: list[Side], workdir: Path, args: Any) -> None:
    for side in sides:
        assert side.stack is not None
        for size in args.sizes:
            target = Target(side.stack.base_url)
            run_wrk(target, workdir, side.tokens, size, WARMUP_SECONDS, args.connections)
    for round_ in range(args.rounds):
        order = [(side, size) for side in sides for size in args.sizes]
        if round_ % 2:
            order.reverse()
        for side, size in order:
            phase(side, size, workdir, args)


def figure_name(side: Side, size: int) -> str:
    return f"server CPU per push, {size} record{'s' if size > 1 else ''}/post ({side.label})"


def report(sides: list[Side], args: Any) -> dict[str, Any]:
    print(
        f"wrk -c{args.connections}, {args.rounds} rounds of {args.duration:g} s, "
        "medians (all rounds in brackets)"
    )
    figures = []
    for side in sides:
        for size in args.sizes:
            server = statistics.median(side.server_us[size])
            envoy = statistics.median(side.envoy_us[size])
            rate = statistics.median(side.rates[size])
            rounds = ", ".join(f"{us:,.0f}" for us in side.server_us[size])
            print(
                f"{side.label:>7}  {size:>3}/post  {rate:7,.0f} posts/s  CPU µs/post "
                f"server {server:6,.0f} Envoy {envoy:4,.0f}  [server: {rounds}]"
            )
            figures.append(
                {
                    "name": figure_name(side, size),
                    "value": round(server, 1),
                    "unit": "µs",
                    "target": "<= 400 µs" if size == 1 else None,
                }
            )
    return {"bench": "push_cpu", "figures": figures}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="1,100", help="records per post, one phase each")
    args = comparison_args(parser)
    args.sizes = [int(size) for size in args.sizes.split(",")]
    sides = [Side("this", None)]
    if args.before is not None:
        sides.append(Side("before", args.before))
    with started(sides, start) as workdir:
        measure(sides, workdir, args)
    print(json.dumps(report(sides, args)))


if __name__ == "__main__":
    main()
