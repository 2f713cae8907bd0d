"""Telemetry ingest over the device link: records/s stored from many devices at once.

Starts a real `thingwire serve` (SQLite in a temp dir, server + Envoy on free ports),
writes the devices with known link secrets into its database, and starts one
`bench/ingest_load.py` process per device. Each opens its link through the gateway and
builds its batches (fresh timestamps: every record is new) before a common start; then all
upload at once, each keeping the Welcome's uploads in flight, and every batch is counted
only when acknowledged (i.e. committed). Reported: records/s from the first upload to the
last ack, and the CPU time of the server and of Envoy per 1,000 records (from /proc).

    .venv/bin/python -m bench.link_ingest [--agents 10] [--batches 50] [--batch-records 500]
        [--rounds 3 --baseline ../main/.venv/bin/thingwire]   # before and after, alternating
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from bench.link_memory import create_devices, envoy_pid
from bench.resource_calls import cpu_seconds
from tests.integration.stack import Stack

USER = "bench"
PASSWORD = "bench-password-1"  # noqa: S105 - a throwaway account in a temp database


def cpu(pid: int) -> float:
    return cpu_seconds(Path(f"/proc/{pid}/stat").read_text())


@dataclass
class Run:
    """One run's figures."""

    stored: int
    repeats: int
    failures: int
    seconds: float
    cpu_per_k: tuple[float, float]

    @property
    def rate(self) -> float:
        return self.stored / self.seconds


def run_once(args: argparse.Namespace, executable: Path | None) -> Run:
    """A fresh stack (``executable``: another checkout's `thingwire`) and one upload run."""
    with tempfile.TemporaryDirectory() as tmp:
        stack = Stack(workdir=Path(tmp), db_url=f"sqlite:///{tmp}/bench.db")
        if executable is not None:
            stack.executable = executable
        stack.start()
        loads: list[subprocess.Popen[str]] = []
        try:
            stack.cli(
                "user",
                *("create", "--email", "b@example.com", "--password", PASSWORD),
                *("--username", USER),
            )
            create_devices(stack.db_url, args.agents)
            assert stack.process is not None
            server, envoy = stack.process.pid, envoy_pid(stack.process.pid)
            for n in range(args.agents):
                command = [
                    sys.executable,
                    *("-m", "bench.ingest_load", "--target", stack.grpc_target),
                    *("--user", USER, "--device", str(n)),
                    *("--batches", str(args.batches), "--batch-records", str(args.batch_records)),
                ]
                loads.append(
                    subprocess.Popen(  # noqa: S603 - our own module, fixed arguments
                        command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
                    )
                )
            for load in loads:
                assert load.stdout is not None
                if (line := load.stdout.readline().strip()) != "ready":
                    raise RuntimeError(f"a load process said {line!r}")
            before = cpu(server), cpu(envoy)
            for load in loads:
                assert load.stdin is not None
                load.stdin.write("go\n")
                load.stdin.flush()
            results = []
            for load in loads:
                assert load.stdout is not None
                results.append(json.loads(load.stdout.readline()))
                load.wait(60)
            after = cpu(server), cpu(envoy)
        finally:
            for load in loads:
                if load.poll() is None:
                    load.kill()
            stack.stop()
    stored = sum(r["stored"] for r in results)
    expected = args.agents * args.batches * args.batch_records
    if stored != expected:
        raise SystemExit(f"stored {stored} records, expected {expected}")
    per_k = [(b - a) / max(stored, 1) * 1000 * 1000 for a, b in zip(before, after, strict=True)]
    return Run(
        stored=stored,
        repeats=sum(r["repeats"] for r in results),
        failures=sum(r["failures"] for r in results),
        seconds=max(r["ended"] for r in results) - min(r["started"] for r in results),
        cpu_per_k=(per_k[0], per_k[1]),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--agents", type=int, default=10, help="devices, one process each")
    parser.add_argument("--batches", type=int, default=50, help="batches per device")
    parser.add_argument("--batch-records", type=int, default=500, help="records per batch")
    parser.add_argument("--rounds", type=int, default=1, help="runs per side; medians")
    parser.add_argument(
        "--baseline", metavar="THINGWIRE", help="also another checkout's `thingwire`, alternating"
    )
    parser.add_argument("--quick", action="store_true", help="--batches 20 (under a minute)")
    args = parser.parse_args()
    if args.quick:
        args.batches = 20
    sides: dict[str, Path | None] = {"after": None}
    if args.baseline:
        sides["before"] = Path(args.baseline)
    runs: dict[str, list[Run]] = {side: [] for side in sides}
    for round_ in range(args.rounds):
        order = list(sides) if round_ % 2 == 0 else list(sides)[::-1]
        for side in order:
            runs[side].append(run_once(args, sides[side]))
    print(
        f"Link ingest: {args.agents} devices x {args.batches} batches x {args.batch_records} "
        f"records, SQLite, through Envoy; {args.rounds} run(s) per side"
    )
    print(
        "| side | records stored | repeats | failed uploads | seconds | records/s | "
        "CPU ms per 1,000 records: server / Envoy |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    figures = []
    for side, done in runs.items():
        for run in done:
            print(
                f"| {side} | {run.stored} | {run.repeats} | {run.failures} | {run.seconds:.2f} "
                f"| {run.rate:,.0f} | {run.cpu_per_k[0]:.1f} / {run.cpu_per_k[1]:.1f} |"
            )
        name = "link ingest, 10 agents, SQLite"
        figures.append(
            {
                "name": name if side == "after" else f"before: {name}",
                "value": round(statistics.median(run.rate for run in done), 1),
                "unit": "records/s",
                "target": ">= 150000" if side == "after" else None,
            }
        )
    load_average = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    print(f"<!-- {os.cpu_count()} CPUs, load average at the end {load_average} -->")
    print(json.dumps({"bench": "link_ingest", "figures": figures}))


if __name__ == "__main__":
    main()
