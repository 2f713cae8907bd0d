"""`make bench`: every benchmark, several runs each, one table of medians.

Each benchmark module is run as its own process (its own stack on free ports, its own load
generators), `--runs` times, one module after the other so that they never share the two
cores. Every module prints, as the last line of its stdout, one JSON object (the contract,
docs/benchmarks.md, "The benchmark suite"):

    {"bench": "ingest_http", "figures": [{"name": ..., "value": ..., "unit": ...,
     "target": ... or null, "ratio_to": optional name of a figure of the same run}]}

The table gives, per figure, the median over the runs, the range, and, where a figure names
a `ratio_to`, the median of the per-run ratios: a comparison is measured side by side in
one run, so its ratio is taken within each run before the runs are combined.

    .venv/bin/python -m bench.suite [--runs 3] [--benches ingest_http,unary_http] [--quick]
        [--out var/bench/latest.md]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: The modules `make bench` runs, in order: the cheap ones first.
DEFAULT_BENCHES = (
    "unary_http",
    "auth_paths",
    "resource_calls",
    "routed_calls",
    "ingest_http",
    "push_cpu",
    "link_ingest",
    "logbook_aggregation",
    "datacooee_statistics",
    "rollup_marks",
    "link_memory",
    "reconnect_storm",
    "vehicle",
)
ROOT = Path(__file__).resolve().parents[1]


class BenchFailed(RuntimeError):
    """A benchmark exited non-zero or printed no summary line."""


@dataclass
class Figure:
    """One named figure of one benchmark, with its value in every run."""

    bench: str
    name: str
    unit: str
    target: str | None
    ratio_to: str | None
    values: list[float] = field(default_factory=list)
    ratios: list[float] = field(default_factory=list)


def parse_summary(stdout: str) -> dict[str, Any]:
    """The benchmark's summary: the last stdout line that is a JSON object with figures."""
    for line in reversed(stdout.strip().splitlines()):
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            summary = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(summary, dict) and isinstance(summary.get("figures"), list):
            return summary
    raise BenchFailed("no summary line (a JSON object with 'figures') on stdout")


def run_bench(module: str, quick: bool, log_dir: Path) -> dict[str, Any]:
    """Run `python -m bench.<module>` once; its whole output goes to a log file."""
    command = [sys.executable, "-m", f"bench.{module}"] + (["--quick"] if quick else [])
    started = time.monotonic()
    result = subprocess.run(  # noqa: S603 - our own interpreter and a module name from the list
        command, cwd=ROOT, capture_output=True, text=True, check=False
    )
    log = log_dir / f"{module}-{int(time.time())}.log"
    log.write_text(result.stdout + "\n--- stderr ---\n" + result.stderr)
    if result.returncode != 0:
        raise BenchFailed(f"bench.{module} exited {result.returncode}; its output is in {log}")
    summary = parse_summary(result.stdout)
    print(f"  bench.{module}: {time.monotonic() - started:.0f} s (log {log})", file=sys.stderr)
    return summary


def collect(figures: dict[tuple[str, str], Figure], bench: str, summary: dict[str, Any]) -> None:
    """Add one run's figures; ratios are computed within the run."""
    by_name = {f["name"]: f for f in summary["figures"]}
    for raw in summary["figures"]:
        key = (bench, raw["name"])
        figure = figures.get(key)
        if figure is None:
            figure = figures[key] = Figure(
                bench=bench,
                name=raw["name"],
                unit=raw.get("unit", ""),
                target=raw.get("target"),
                ratio_to=raw.get("ratio_to"),
            )
        value = float(raw["value"])
        figure.values.append(value)
        base = by_name.get(figure.ratio_to or "")
        if base is not None and float(base["value"]) != 0:
            figure.ratios.append(value / float(base["value"]))


def format_number(value: float) -> str:
    """Figures as people read them: thousands separated, few decimals for small values."""
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def table(figures: Sequence[Figure]) -> str:
    """The markdown table docs/benchmarks.md keeps."""
    lines = [
        "| bench | figure | median | unit | runs (min-max) | ratio | target |",
        "|---|---|---:|---|---|---:|---|",
    ]
    for f in figures:
        spread = f"{len(f.values)} ({format_number(min(f.values))}-{format_number(max(f.values))})"
        ratio = f"{statistics.median(f.ratios):.2f}x" if f.ratios else ""
        lines.append(
            f"| {f.bench} | {f.name} | {format_number(statistics.median(f.values))} | {f.unit} "
            f"| {spread} | {ratio} | {f.target or ''} |"
        )
    return "\n".join(lines)


def machine() -> str:
    """What the figures were measured on, for the table's heading."""
    cpu = "unknown CPU"
    with open("/proc/cpuinfo") as info:
        for line in info:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as info:
        mem_kib = int(info.readline().split()[1])
    git = ["git", "rev-parse", "--short", "HEAD"]
    commit = subprocess.run(  # noqa: S603 - a fixed git command
        git,
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    return (
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, commit {commit or '?'}, "
        f"{os.cpu_count()} cores ({cpu}), {mem_kib / 2**20:.0f} GiB, Linux "
        f"{platform.release()}, Python {platform.python_version()}, "
        f"load average {os.getloadavg()[0]:.1f} at the end"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3, help="runs of every benchmark")
    parser.add_argument(
        "--benches", default=",".join(DEFAULT_BENCHES), help="modules, comma or space separated"
    )
    parser.add_argument("--quick", action="store_true", help="pass --quick to every benchmark")
    parser.add_argument("--out", type=Path, default=ROOT / "var" / "bench" / "latest.md")
    args = parser.parse_args()
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    benches = args.benches.replace(",", " ").split()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    figures: dict[tuple[str, str], Figure] = {}
    failures: list[str] = []
    for bench in benches:
        for run in range(args.runs):
            print(f"bench.{bench}, run {run + 1} of {args.runs}", file=sys.stderr)
            try:
                collect(figures, bench, run_bench(bench, args.quick, args.out.parent))
            except BenchFailed as failure:
                failures.append(f"bench.{bench} run {run + 1}: {failure}")
                print(f"  {failure}", file=sys.stderr)
                break
    command = " ".join([".venv/bin/python -m bench.suite", *sys.argv[1:]])
    rows = table(list(figures.values()))
    report = f"{machine()}\n\n`{command}`, medians of {args.runs} runs\n\n{rows}\n"
    if failures:
        report += "\nFailed:\n" + "\n".join(f"- {f}" for f in failures) + "\n"
    args.out.write_text(report)
    print(report)
    if failures:
        sys.exit(1)


if __name__ == "__main__":
    main()
