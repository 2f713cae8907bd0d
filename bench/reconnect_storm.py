"""Reconnect storm: `--links` device links, the server restarted under them.

Starts a real `thingwire serve` (SQLite in a temp dir, server + Envoy on free ports), writes
the devices into its database, and has load-generator processes (`bench/link_load.py`, the
agent's own code: its backoff with full jitter, its GoAway handling) hold the links through
the gateway. Then, once per signal, it stops the server (SIGTERM, as an operator does: each
link is told when to come back within the GoAway window; SIGKILL: no GoAway) and starts it
again on the same ports and database, and measures until every device is back (welcomed)
and has answered a REST call via Envoy, while `GET /auth/user/` is polled every 0.1 s
(`bench/storm.py`).

    .venv/bin/python -m bench.reconnect_storm [--links 10000] [--signals TERM,KILL] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import tempfile
from pathlib import Path

from bench.fleet import (
    STOP_TIMEOUT_S,
    WATCHER,
    Fleet,
    Rest,
    add_fleet_arguments,
    bearer_token,
    fleet_size,
    start_stack,
)
from bench.storm import CALLERS, restart

TARGET_S = 60.0


async def run(
    links: int,
    processes: int,
    signals: list[signal.Signals],
    open_rate: float,
    server_checkout: Path | None = None,
    callers: int = CALLERS,
) -> list[dict]:
    with tempfile.TemporaryDirectory() as tmp:
        stack = start_stack(Path(tmp), links, server_checkout)
        rounds = []
        try:
            rest = Rest(stack.base_url, bearer_token(stack), callers)
            poller_rest = Rest(stack.base_url, bearer_token(stack, WATCHER), 4)
            fleet = Fleet(stack.grpc_target, links, processes)
            await fleet.start(open_rate)
            try:
                await fleet.wait_up(300)
                for sig in signals:
                    result = await restart(
                        stack, fleet, rest, poller_rest, sig, 2 * TARGET_S, callers
                    )
                    print(json.dumps(result), flush=True)
                    rounds.append(result)
                    try:
                        await fleet.wait_up(2 * TARGET_S)
                    except TimeoutError:
                        print(f"only {fleet.up} links up: no further round", flush=True)
                        break
            finally:
                await fleet.stop()
                rest.close()
                poller_rest.close()
        finally:
            stack.stop(timeout=STOP_TIMEOUT_S)
    return rounds


def figures(rounds: list[dict]) -> list[dict[str, object]]:
    out: list[dict[str, object]] = []
    for r in rounds:
        what = f"{r['links']} links, {r['signal']}"
        back = r["all_answering_s"]
        out += [
            {"name": f"all back and answering after a restart, {what}", "unit": "s",
             "value": back if back is not None else 2 * TARGET_S, "target": f"<= {TARGET_S:g} s"},
            {"name": f"devices answering at the end of the round, {what}", "unit": "devices",
             "value": r["answering"], "target": str(r["links"])},
            {"name": f"server up again after the stop, {what}", "unit": "s",
             "value": r["server_up_s"], "target": None},
            {"name": f"REST failures while the links come back, {what}", "unit": "calls",
             "value": r["rest_failures_while_storm"], "target": "0"},
            {"name": f"REST p99 while the links come back, {what}", "unit": "ms",
             "value": r["rest_p99_ms"], "target": None},
        ]  # fmt: skip
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    add_fleet_arguments(parser)
    parser.add_argument("--signals", default="TERM,KILL", help="how the server is stopped, in turn")
    parser.add_argument(
        "--callers", type=int, default=CALLERS, help="REST calls in flight to the returning devices"
    )
    args = parser.parse_args()
    links, processes = fleet_size(args)
    signals = [signal.Signals[f"SIG{name.strip()}"] for name in args.signals.split(",")]
    rounds = asyncio.run(
        run(links, processes, signals, args.open_rate, args.server_checkout, args.callers)
    )
    print(json.dumps({"bench": "reconnect_storm", "figures": figures(rounds)}), flush=True)


if __name__ == "__main__":
    main()
