"""Latency of resource calls through REST and gRPC at fixed rates, and the saturation rate.

Starts a real `thingwire serve` (SQLite in a temp dir, server + Envoy on free ports), a user
and a device, and a real `thingwire agent --simulate` process linked through the gateway.
A separate load-generator process (`bench/resource_load.py`) then calls the device's
`temperature` and `io` resources, alternating the two, over three faces: REST through
Envoy, gRPC through Envoy and gRPC straight to the server. For each rate the faces take
turns (rate-major, so slow drifts of a shared machine spread over all faces alike), each
for a fixed duration at that rate, open-loop; then each face runs closed-loop with N
callers for its saturation rate. Around every phase the CPU time of each process (server,
Envoy, agent, load generator) is read from /proc, so the table says what a call costs each.

With py-spy installed (`make setup` installs it) a last round at the highest rate runs
under `py-spy record` on the server, once per face, and the top frames are printed; the
collapsed stacks are kept in --profile-dir for flame graphs.

    .venv/bin/python -m bench.resource_calls [--rates 100,250,500] [--duration 8]
        [--saturation-seconds 5] [--concurrency 16] [--no-profile | --native]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from pathlib import Path
from typing import Any

from bench.link_memory import envoy_pid
from bench.resource_load import FACES
from tests.integration.agents import AgentProcess
from tests.integration.stack import Stack

USER = "bench"
DEVICE = "bench"
CREDENTIALS = "bench-device-credentials"
PASSWORD = "bench-password-1"  # noqa: S105 - a throwaway account in a temp database
WARMUP_RATE = 100
WARMUP_SECONDS = 2.0
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
CORES = os.cpu_count() or 1
PY_SPY = Path(sys.executable).with_name("py-spy")
#: The checkout, cut from the paths of our own modules in the profile.
ROOT = Path(__file__).resolve().parents[1]
PROFILE_RATE_HZ = 250
TOP_FRAMES = 20
CPU_COLUMN = "CPU µs/call: server (loop + threads, kernel %) / Envoy / agent / client"
#: The rate at which the latency targets are set (docs/benchmarks.md).
TARGET_RATE = 500
LABELS = {"rest": "REST via Envoy", "grpc-envoy": "gRPC via Envoy", "grpc-direct": "gRPC direct"}


def cpu_seconds(stat: str, *, system_only: bool = False) -> float:
    """User + system (or only system) CPU time in a /proc stat line (a process's: all its
    threads)."""
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[12]) + (0 if system_only else int(fields[11]))) / CLOCK_TICKS


def server_sys(pid: int) -> float:
    """The kernel's share of the process's CPU time: system calls, network, wake-ups."""
    return cpu_seconds(Path(f"/proc/{pid}/stat").read_text(), system_only=True)


def thread_cpu(pid: int) -> dict[str, float]:
    """CPU seconds of the process's threads by name; the main thread (the server's event
    loop) is `main`. A thread that ended meanwhile is missing, so compare long-lived ones."""
    threads: dict[str, float] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            stat = (task / "stat").read_text()
        except FileNotFoundError:
            continue
        name = "main" if task.name == str(pid) else stat[stat.index("(") + 1 : stat.rindex(")")]
        threads[name] = threads.get(name, 0.0) + cpu_seconds(stat)
    return threads


@dataclass
class Processes:
    """The pids whose CPU time each phase accounts for."""

    server: int
    envoy: int
    agent: int
    load: int

    def cpu(self) -> dict[str, float]:
        return {
            name: cpu_seconds(Path(f"/proc/{pid}/stat").read_text())
            for name, pid in vars(self).items()
        }


class LoadGenerator:
    """The `bench.resource_load` process, driven one phase at a time over its stdin."""

    def __init__(self, stack: Stack, token: str, grpc_direct: str | None = None) -> None:
        """``grpc_direct``: where the `grpc-direct` face calls (default: the server's port)."""
        command = [
            sys.executable,
            "-m",
            "bench.resource_load",
            *("--rest-url", stack.base_url),
            *("--grpc-envoy", stack.grpc_target),
            *("--grpc-direct", grpc_direct or f"127.0.0.1:{stack.grpc_port}"),
            *("--token", token, "--user", USER, "--device", DEVICE),
        ]
        self.process = subprocess.Popen(  # noqa: S603 - our own module, fixed arguments
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        self._expect("ready")

    def _expect(self, word: str) -> None:
        assert self.process.stdout is not None
        line = self.process.stdout.readline().strip()
        if line != word:
            raise RuntimeError(f"load generator said {line!r} instead of {word!r}")

    def run(self, phase: dict[str, Any], processes: Processes) -> dict[str, Any]:
        """Run one phase; its results with the CPU seconds each process spent during it."""
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        self.process.stdin.write(json.dumps(phase) + "\n")
        self.process.stdin.flush()
        self._expect("start")
        before, threads_before = processes.cpu(), thread_cpu(processes.server)
        sys_before = server_sys(processes.server)
        result: dict[str, Any] = json.loads(self.process.stdout.readline())
        after, threads_after = processes.cpu(), thread_cpu(processes.server)
        result["cpu"] = {name: after[name] - before[name] for name in before}
        result["server_sys"] = server_sys(processes.server) - sys_before
        result["server_threads"] = {
            name: seconds - threads_before.get(name, 0.0) for name, seconds in threads_after.items()
        }
        return result

    def close(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def bearer_token(stack: Stack) -> str:
    """A Thinger access token (a JWT) from the password grant, as a Thinger client logs in."""
    with stack.http() as http:
        answer = http.post(
            "/oauth/token",
            content=f"grant_type=password&username={USER}&password={PASSWORD}",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        answer.raise_for_status()
        return str(answer.json()["access_token"])


# -- the profile ------------------------------------------------------------------------------

FRAME = re.compile(r"^(?P<name>.*?) \((?P<file>[^()]*?)(?::\d+)?\)$")


def short_frame(frame: str) -> str:
    """`function (file)` without the line and with the path cut to what names the module."""
    match = FRAME.match(frame)
    if match is None:
        return frame
    path = match["file"]
    for marker in (f"{ROOT}/", "site-packages/", "/lib/python3"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    if path.startswith(".") and "/" in path:  # "/lib/python3" leaves ".11/asyncio/..."
        path = path.split("/", 1)[1]
    return f"{match['name']} ({path})"


#: Leaves of a thread that waits, in a native profile (py-spy tells idle Python threads by
#: itself, not native ones): the poller's epoll, futexes, the thread pool's queue, Envoy's wait.
IDLE_LEAVES = ("epoll_wait", "wait4", "_queue_SimpleQueue_get", "PyThread_acquire_lock")
#: The frame every sample of the event-loop thread has: the servicers and grpc.aio run there.
LOOP_FRAME = "run_forever (asyncio/base_events.py)"


@dataclass
class Profile:
    """The samples of py-spy's raw output (collapsed stacks), event-loop thread apart."""

    loop: int = 0
    other: int = 0
    idle: int = 0
    #: Per frame of the loop thread: samples where it is the leaf, and where it is anywhere.
    leaf: Counter[str] = dataclass_field(default_factory=Counter)
    total: Counter[str] = dataclass_field(default_factory=Counter)
    #: Per module of the loop thread's leaf frames.
    modules: Counter[str] = dataclass_field(default_factory=Counter)
    other_leaf: Counter[str] = dataclass_field(default_factory=Counter)

    @classmethod
    def parse(cls, collapsed: str) -> Profile:
        profile = cls()
        for line in collapsed.splitlines():
            stack, _, count = line.rpartition(" ")
            if not stack or not count.isdigit():
                continue
            samples = int(count)
            frames = [short_frame(frame) for frame in stack.split(";")]
            leaf = frames[-1]
            if leaf.startswith(IDLE_LEAVES) or (leaf.startswith("0x") and "(libc" in leaf):
                profile.idle += samples  # a wait, or libc without a symbol (its futex wait)
                continue
            if LOOP_FRAME not in frames:
                profile.other += samples
                profile.other_leaf[frames[-1]] += samples
                continue
            profile.loop += samples
            profile.leaf[frames[-1]] += samples
            profile.modules[module_of(frames[-1])] += samples
            for frame in set(frames):
                profile.total[frame] += samples
        return profile


def module_of(frame: str) -> str:
    """What a leaf frame's time is: our module's file, or the library's top package."""
    if frame == "_run (asyncio/events.py)":
        return "grpc.aio's Cython and C core (below the loop's callback)"
    path = frame.rpartition(" (")[2].rstrip(")")
    for ours in ("server/", "device_agent/", "gateway/"):
        if path.startswith(ours):
            return path
    return path.split("/", 1)[0].removesuffix(".py")


def profiled(
    load: LoadGenerator, phase: dict[str, Any], processes: Processes, out: Path, native: bool
) -> tuple[dict[str, Any], str]:
    """Run `phase` with py-spy recording the server; its results and the collapsed stacks."""
    spy = subprocess.Popen(  # noqa: S603 - py-spy from our own virtualenv, fixed arguments
        [
            str(PY_SPY),
            "record",
            *("--pid", str(processes.server)),
            *("--rate", str(PROFILE_RATE_HZ)),
            *("--format", "raw", "--output", str(out)),
            # Native frames show grpc's Cython and C core; reading them needs the process
            # paused for each sample, so the Python-only profile does not pause it.
            "--native" if native else "--nonblocking",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(1.5)  # attach and start sampling before the first call
    try:
        result = load.run(phase, processes)
    finally:
        spy.send_signal(signal.SIGINT)
        _, err = spy.communicate(timeout=30)
    if not out.exists():
        raise RuntimeError(f"py-spy wrote no profile: {err}")
    return result, out.read_text()


# -- the report -------------------------------------------------------------------------------


def cpu_per_call(result: dict[str, Any]) -> str:
    """µs of CPU per call: the server (its event loop + its other threads, and the kernel's
    share), Envoy, the agent, the load generator."""
    calls = max(1, result["ok"] + sum(result["errors"].values()))
    us = {name: seconds / calls * 1e6 for name, seconds in result["cpu"].items()}
    loop = result["server_threads"].get("main", 0.0) / calls * 1e6
    return (
        f"{us['server']:.0f} ({loop:.0f} + {us['server'] - loop:.0f}, "
        f"{result['server_sys'] / max(result['cpu']['server'], 1e-9) * 100:.0f}% sys) "
        f"/ {us['envoy']:.0f} "
        f"/ {us['agent']:.0f} / {us['load']:.0f}"
    )


def print_threads(results: list[dict[str, Any]]) -> None:
    """Where the server's CPU went by thread, over all phases."""
    threads: dict[str, float] = {}
    for result in results:
        for name, seconds in result["server_threads"].items():
            threads[name] = threads.get(name, 0.0) + seconds
    total = sum(threads.values()) or 1.0
    ranked = sorted(threads.items(), key=lambda item: -item[1])[:8]
    shares = ", ".join(f"{name} {seconds / total * 100:.0f}%" for name, seconds in ranked)
    print(f"\nServer CPU by thread over all phases ({total:.1f} s): {shares}")


def errors_of(result: dict[str, Any]) -> str:
    errors = result["errors"]
    return ", ".join(f"{count} {what}" for what, count in errors.items()) if errors else "0"


def print_rate_table(results: list[dict[str, Any]], title: str) -> None:
    print(f"\n{title}")
    print(
        "| face | rate/s | achieved/s | p50 ms | p99 ms | max ms | errors | p50 read / io ms "
        f"| send lag p99 ms | {CPU_COLUMN} |"
    )
    print("|---|---:|---:|---:|---:|---:|---|---:|---:|---:|")
    for r in results:
        print(
            f"| {LABELS[r['face']]} | {r['rate']} | {r['achieved']:.0f} | {r['p50']:.2f} "
            f"| {r['p99']:.2f} | {r['max']:.1f} | {errors_of(r)} "
            f"| {r['p50_read']:.2f} / {r['p50_io']:.2f} | {r['lag_p99']:.2f} | {cpu_per_call(r)} |"
        )


def print_saturation_table(results: list[dict[str, Any]]) -> None:
    print("\nSaturation (closed loop)")
    print(
        "| face | callers | calls/s | p50 ms | p99 ms | errors "
        f"| {CPU_COLUMN} | CPU % of {CORES} cores |"
    )
    print("|---|---:|---:|---:|---:|---|---:|---:|")
    for r in results:
        busy = sum(r["cpu"].values()) / r["wall_s"] / CORES * 100
        print(
            f"| {LABELS[r['face']]} | {r['concurrency']} | {r['achieved']:.0f} | {r['p50']:.2f} "
            f"| {r['p99']:.2f} | {errors_of(r)} | {cpu_per_call(r)} | {busy:.0f} |"
        )


def print_profile(face: str, result: dict[str, Any], collapsed: str) -> None:
    profile = Profile.parse(collapsed)
    calls = max(1, result["ok"])
    loop = max(1, profile.loop)
    print(
        f"\nProfile of the server, {LABELS[face]} at {result['rate']}/s ({calls} calls; "
        f"p50 {result['p50']:.2f} ms, p99 {result['p99']:.2f} ms under the profiler): "
        f"{profile.loop} samples on the event-loop thread at {PROFILE_RATE_HZ} Hz, "
        f"{profile.loop / PROFILE_RATE_HZ / calls * 1e6:.0f} µs per call; "
        f"other threads {profile.other}, waiting {profile.idle}; the process's CPU by /proc "
        f"{result['cpu']['server'] / calls * 1e6:.0f} µs per call"
    )
    print("| % of loop samples, total | self | frame |")
    print("|---:|---:|---|")
    for frame, count in profile.total.most_common(TOP_FRAMES):
        if frame != LOOP_FRAME and count < loop:  # the frames every sample has say nothing
            self_share = profile.leaf[frame] / loop * 100
            print(f"| {count / loop * 100:.1f} | {self_share:.1f} | `{frame}` |")
    print("Loop samples by the leaf frame's module:")
    for module, count in profile.modules.most_common(TOP_FRAMES):
        print(f"  {count / loop * 100:5.1f}%  {module}")
    print("Top self frames of the loop thread:")
    for frame, count in profile.leaf.most_common(TOP_FRAMES):
        print(f"  {count / loop * 100:5.1f}%  {frame}")
    if profile.other:
        print("Other threads' leaves:")
        for frame, count in profile.other_leaf.most_common(5):
            print(f"  {count:5d}  {frame}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rates", default="100,250,500", help="open-loop rates, calls/s")
    parser.add_argument("--duration", type=float, default=8.0, help="seconds per rate phase")
    parser.add_argument("--saturation-seconds", type=float, default=5.0)
    parser.add_argument("--concurrency", type=int, default=16, help="callers at saturation")
    parser.add_argument("--faces", default=",".join(FACES))
    parser.add_argument("--no-profile", action="store_true", help="skip the py-spy round")
    parser.add_argument(
        "--native", action="store_true", help="profile native frames too (pauses the server)"
    )
    parser.add_argument("--profile-dir", type=Path, default=Path("var/bench"))
    parser.add_argument(
        "--quick", action="store_true", help="500 calls/s only, 5 s phases, no profile"
    )
    args = parser.parse_args()
    if args.quick:
        args.rates, args.duration, args.saturation_seconds = "500", 5.0, 5.0
        args.no_profile = True
    rates = [int(rate) for rate in args.rates.split(",")]
    faces = args.faces.split(",")
    profile = not args.no_profile and PY_SPY.exists()
    if not args.no_profile and not profile:
        print(f"no {PY_SPY}: skipping the profile (make setup installs py-spy)")
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        stack = Stack(workdir=Path(tmp), db_url=f"sqlite:///{tmp}/bench.db")
        stack.start()
        agent = AgentProcess(stack, USER, DEVICE, CREDENTIALS, simulate=True)
        load = None
        try:
            stack.cli(
                "user",
                *("create", "--email", "b@example.com", "--password", PASSWORD),
                *("--username", USER),
            )
            stack.cli(
                "device", "create", "--user", USER, "--device", DEVICE, "--credentials", CREDENTIALS
            )
            agent.start()
            agent.wait_connected()
            load = LoadGenerator(stack, bearer_token(stack))
            assert stack.process is not None
            assert agent.process is not None
            processes = Processes(
                server=stack.process.pid,
                envoy=envoy_pid(stack.process.pid),
                agent=agent.process.pid,
                load=load.process.pid,
            )
            for face in faces:  # every face's connections and code paths warm before timing
                warm = load.run(
                    {"face": face, "mode": "rate", "rate": WARMUP_RATE, "duration": WARMUP_SECONDS},
                    processes,
                )
                if warm["errors"]:
                    raise RuntimeError(f"warm-up of {face} failed: {warm['errors']}")
            rated = [
                load.run(
                    {"face": face, "mode": "rate", "rate": rate, "duration": args.duration},
                    processes,
                )
                for rate in rates
                for face in faces
            ]
            saturated = [
                load.run(
                    {
                        "face": face,
                        "mode": "closed",
                        "concurrency": args.concurrency,
                        "duration": args.saturation_seconds,
                    },
                    processes,
                )
                for face in faces
            ]
            profiles = []
            if profile:
                args.profile_dir.mkdir(parents=True, exist_ok=True)
                for face in faces:
                    phase = {
                        "face": face,
                        "mode": "rate",
                        "rate": max(rates),
                        "duration": args.duration,
                    }
                    out = args.profile_dir / f"resource_calls-{face}.txt"
                    profiles.append((face, *profiled(load, phase, processes, out, args.native)))
        finally:
            if load is not None:
                load.close()
            if agent.process is not None:
                agent.__exit__()  # stops the agent, whatever happened
            stack.stop()
    print(
        f"Resource calls, {args.duration:g} s per face and rate (open loop, calls alternate "
        f"temperature / io), then {args.concurrency} closed-loop callers for "
        f"{args.saturation_seconds:g} s per face; {time.monotonic() - started:.0f} s in all"
    )
    print_rate_table(rated, "Fixed rate (open loop, latency from each call's due time)")
    print_saturation_table(saturated)
    print_threads(rated + saturated)
    for face, result, collapsed in profiles:
        print_profile(face, result, collapsed)
    if profiles:
        print(f"\nCollapsed stacks in {args.profile_dir}/ (flamegraph.pl or speedscope read them)")
    load_average = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    print(f"<!-- {CORES} CPUs, load average at the end {load_average} -->")
    print(json.dumps(suite_figures(rated, saturated)))


def suite_figures(rated: list[dict[str, Any]], saturated: list[dict[str, Any]]) -> dict[str, Any]:
    """The make-bench line: p50 and p99 at each rate, calls/s at saturation, per face."""
    figures: list[dict[str, Any]] = []
    for r in rated:
        at = f"{LABELS[r['face']]}, {r['rate']} calls/s"
        at_target = r["rate"] == TARGET_RATE
        figures.append(
            {
                "name": f"resource call p50, {at}",
                "value": round(r["p50"], 3),
                "unit": "ms",
                "target": "<= 2 ms" if at_target else None,
            }
        )
        figures.append(
            {
                "name": f"resource call p99, {at}",
                "value": round(r["p99"], 3),
                "unit": "ms",
                "target": "<= 10 ms" if at_target else None,
            }
        )
    for r in saturated:
        figures.append(
            {
                "name": f"resource calls at saturation, {LABELS[r['face']]}",
                "value": round(r["achieved"], 1),
                "unit": "calls/s",
                "target": ">= 1500 calls/s",
            }
        )
    return {"bench": "resource_calls", "figures": figures}


if __name__ == "__main__":
    main()
