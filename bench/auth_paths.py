"""Latency and throughput of one authenticated call over each face of the stack.

Starts a real `thingwire serve` (SQLite in a temp dir) and calls GetCurrentUser
(`GET /auth/user/`) with each credential kind, over REST through Envoy, gRPC through Envoy
and gRPC straight to the server, side by side in one run. Loopback only; bounded counts.

    .venv/bin/python -m bench.auth_paths [--calls 2000] [--threads 8] [--quick]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path

import grpc
import httpx
from thingwire.auth.v1 import auth_pb2, auth_pb2_grpc

from tests.integration.stack import Stack

WARMUP_CALLS = 300
LOGIN_CALLS = 40
PASSWORD = "bench-password-1"  # noqa: S105 - a throwaway account in a temp database


def _measure(call: Callable[[], object], calls: int, threads: int) -> tuple[float, float, float]:
    """p50 and p99 latency in ms of sequential calls, and calls/s with `threads` clients."""
    latencies = sorted(_timed(call) for _ in range(calls))
    per_thread = calls // threads
    start = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        for future in [
            pool.submit(lambda: [call() for _ in range(per_thread)]) for _ in range(threads)
        ]:
            future.result()
    rate = per_thread * threads / (time.perf_counter() - start)
    return statistics.median(latencies), latencies[int(len(latencies) * 0.99)], rate


def _timed(call: Callable[[], object]) -> float:
    start = time.perf_counter()
    call()
    return (time.perf_counter() - start) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--quick", action="store_true", help="500 calls per face")
    args = parser.parse_args()
    if args.quick:
        args.calls = 500
    with tempfile.TemporaryDirectory() as tmp:
        stack = Stack(workdir=Path(tmp), db_url=f"sqlite:///{tmp}/bench.db")
        stack.start()
        try:
            stack.cli_json("user", "create", "--email", "b@example.com", "--password", PASSWORD)
            api_token = stack.cli_json(
                "apitoken", "create", "--user", "b@example.com", "--name", "b"
            )
            with stack.http() as http:
                login = partial(
                    http.post, "/auth/login/", json={"email": "b@example.com", "password": PASSWORD}
                )
                jwt_token = login().json()["token"]
                # Logins verify an argon2 hash: slow by design, so measured on their own.
                login_ms = sorted(_timed(login) for _ in range(LOGIN_CALLS))
            credentials = {
                "Bearer JWT": f"Bearer {jwt_token}",
                "APIToken": f"APIToken {api_token['token']}",
            }
            rows = []
            request = auth_pb2.GetCurrentUserRequest()
            with (
                httpx.Client(base_url=stack.base_url, timeout=10) as rest,
                grpc.insecure_channel(stack.grpc_target) as via_envoy,
                grpc.insecure_channel(f"127.0.0.1:{stack.grpc_port}") as direct,
            ):
                envoy_stub = auth_pb2_grpc.AuthServiceStub(via_envoy)
                direct_stub = auth_pb2_grpc.AuthServiceStub(direct)
                for label, header in credentials.items():
                    metadata = (("authorization", header),)
                    faces: dict[str, Callable[[], object]] = {
                        "REST via Envoy": partial(
                            rest.get, "/auth/user/", headers={"Authorization": header}
                        ),
                        "gRPC via Envoy": partial(
                            envoy_stub.GetCurrentUser, request, metadata=metadata
                        ),
                        "gRPC direct": partial(
                            direct_stub.GetCurrentUser, request, metadata=metadata
                        ),
                    }
                    for call in faces.values():  # warm every face before timing any
                        for _ in range(WARMUP_CALLS):
                            call()
                    for face, call in faces.items():
                        p50, p99, rate = _measure(call, args.calls, args.threads)
                        rows.append((label, face, p50, p99, rate))
        finally:
            stack.stop()
    print(f"GetCurrentUser, {args.calls} sequential calls, then {args.threads} threads")
    print("| credential | face | p50 ms | p99 ms | calls/s |")
    print("|---|---|---:|---:|---:|")
    for label, face, p50, p99, rate in rows:
        print(f"| {label} | {face} | {p50:.2f} | {p99:.2f} | {rate:.0f} |")
    print(
        f"\nPOST /auth/login/ (argon2 verify), {LOGIN_CALLS} sequential: "
        f"p50 {statistics.median(login_ms):.1f} ms, max {login_ms[-1]:.1f} ms"
    )
    figures: list[dict[str, object]] = []
    for label, face, p50, _p99, rate in rows:
        figures.append(
            {"name": f"GetCurrentUser p50, {label}, {face}", "value": round(p50, 3), "unit": "ms"}
        )
        figures.append(
            {
                "name": f"GetCurrentUser, {label}, {face}, {args.threads} threads",
                "value": round(rate, 1),
                "unit": "calls/s",
            }
        )
    for figure in figures:
        figure["target"] = None
    print(json.dumps({"bench": "auth_paths", "figures": figures}))


if __name__ == "__main__":
    main()
