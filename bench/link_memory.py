"""Server memory per connected device link.

Starts a real `thingwire serve` (SQLite in a temp dir, server + Envoy on free ports), writes
the devices straight into its database, then has a separate load-generator process
(`bench/link_load.py`) open links through the gateway in steps. After each step it reads
the resident set size (VmRSS in /proc) of the Python server and of Envoy. Each mode gets a
fresh stack, because memory a process took stays with it after links close.

    .venv/bin/python -m bench.link_memory [--steps 1000,2000] [--channels 8]

Modes: `shared` (the links spread over --channels HTTP/2 connections) and `per-device` (one
connection per link, as real devices do). The links open with a link secret, as a fleet
does when it comes back after a restart, so no argon2 check runs during the measurement.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from bench.link_load import DEVICE, SECRET
from server.security.hashing import configure_argon2, hash_secret
from server.storage import devices, users
from server.storage.db import Database
from tests.integration.stack import Stack

USER = "bench"
PASSWORD = "bench-password-1"  # noqa: S105 - a throwaway account in a temp database
#: Links opened and closed before the baseline, so that what the first link of any run
#: brings (database connections, code paths run once) is in the baseline, not per link.
WARMUP_LINKS = 50
SETTLE_SECONDS = 2.0


def rss_kib(pid: int) -> int:
    """The process's resident set size in KiB (VmRSS of /proc/<pid>/status)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


def child_pids(pid: int) -> list[int]:
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [int(child) for child in children]


def envoy_pid(server_pid: int) -> int:
    for child in child_pids(server_pid):
        if "envoy" in Path(f"/proc/{child}/cmdline").read_text():
            return child
    raise RuntimeError("no Envoy under the server")


def downstream_connections(stack: Stack) -> int:
    """Envoy's open client connections on the gateway listener (its admin stats)."""
    stats = httpx.get(f"http://127.0.0.1:{stack.admin_port}/stats", timeout=5).text
    return sum(
        int(line.rsplit(":", 1)[1])
        for line in stats.splitlines()
        if line.startswith("http.thingwire_")
        and line.split(":")[0].endswith(".downstream_cx_active")
    )


def create_devices(db_url: str, count: int) -> None:
    """`count` devices with known link secrets, in one transaction, while the server runs."""
    configure_argon2(time_cost=1, memory_cost=8, parallelism=1)  # setup only: never verified
    database = Database(db_url)
    try:
        with database.session() as s:
            user = users.get_user_by_login(s, USER)
            assert user is not None
            for n in range(count):
                device, _ = devices.create_device(s, user.id, DEVICE.format(n=n), "unused")
                device.link_secret_hash = hash_secret(SECRET.format(n=n))
    finally:
        database.dispose()


def run_mode(mode: str, steps: list[int], channels: int) -> list[tuple[int, int, int, int]]:
    """(links, server KiB, Envoy KiB, downstream connections) at 0 links and after each step."""
    with tempfile.TemporaryDirectory() as tmp:
        stack = Stack(workdir=Path(tmp), db_url=f"sqlite:///{tmp}/bench.db")
        stack.start()
        load = None
        try:
            stack.cli(
                "user",
                "create",
                "--email",
                "b@example.com",
                "--password",
                PASSWORD,
                "--username",
                USER,
            )
            create_devices(stack.db_url, max(steps))
            assert stack.process is not None
            server, envoy = stack.process.pid, envoy_pid(stack.process.pid)

            def load_generator(step_list: list[int]) -> subprocess.Popen[str]:
                command = [
                    sys.executable,
                    "-m",
                    "bench.link_load",
                    "--target",
                    stack.grpc_target,
                    "--user",
                    USER,
                    "--steps",
                    ",".join(map(str, step_list)),
                    "--channels",
                    str(channels),
                ]
                if mode == "per-device":
                    command.append("--per-device")
                return subprocess.Popen(  # noqa: S603 - our own module, fixed arguments
                    command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
                )

            warmup = load_generator([WARMUP_LINKS])
            _expect(warmup, WARMUP_LINKS)
            assert warmup.stdin is not None
            warmup.stdin.close()
            warmup.wait(30)
            time.sleep(SETTLE_SECONDS)
            rows = [(0, rss_kib(server), rss_kib(envoy), downstream_connections(stack))]
            load = load_generator(steps)
            assert load.stdin is not None
            for step in steps:
                _expect(load, step)
                time.sleep(SETTLE_SECONDS)
                rows.append((step, rss_kib(server), rss_kib(envoy), downstream_connections(stack)))
                load.stdin.write("\n")
                load.stdin.flush()
            load.stdin.close()
            load.wait(60)
        finally:
            if load is not None and load.poll() is None:
                load.kill()
            stack.stop()
    return rows


def _expect(load: subprocess.Popen[str], links: int) -> None:
    assert load.stdout is not None
    line = load.stdout.readline().strip()
    if line != f"open {links}":
        raise RuntimeError(f"load generator said {line!r} instead of 'open {links}'")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", default="1000,2000", help="links open after each step")
    parser.add_argument("--channels", type=int, default=8, help="connections in shared mode")
    parser.add_argument("--modes", default="shared,per-device")
    args = parser.parse_args()
    steps = [int(step) for step in args.steps.split(",")]
    print(
        "| mode | links | client connections | server RSS MiB | KiB/link"
        " | Envoy RSS MiB | KiB/link |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for mode in args.modes.split(","):
        started = time.monotonic()
        rows = run_mode(mode, steps, args.channels)
        _, server0, envoy0, _ = rows[0]
        label = f"{mode} ({args.channels} connections)" if mode == "shared" else mode
        for links, server, envoy, connections in rows:
            per_server = f"{(server - server0) / links:.1f}" if links else "—"
            per_envoy = f"{(envoy - envoy0) / links:.1f}" if links else "—"
            print(
                f"| {label} | {links} | {connections} | {server / 1024:.1f} | {per_server} "
                f"| {envoy / 1024:.1f} | {per_envoy} |",
                flush=True,
            )
        print(f"<!-- {mode}: {time.monotonic() - started:.0f} s -->", flush=True)


if __name__ == "__main__":
    main()
