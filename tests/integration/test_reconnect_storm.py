"""A reduced reconnect storm: 500 agent links through the gateway, `thingwire serve`
stopped (SIGTERM, then SIGKILL) and started again under them; every device comes back and
answers a REST call, and REST is served throughout (`bench/storm.py`; the full-size run is
`bench/reconnect_storm.py`, docs/benchmarks.md "Reconnect storm")."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

from bench.fleet import STOP_TIMEOUT_S, WATCHER, Fleet, Rest, bearer_token, start_stack, sweep
from bench.storm import restart

LINKS = 500
#: Far more than 500 links need here (about 10 s), far less than a hang.
ROUND_TIMEOUT_S = 60.0


def test_every_link_comes_back_and_answers_after_a_restart(tmp_path: Path) -> None:
    async def scenario() -> list[dict]:
        stack = start_stack(tmp_path, LINKS, THINGWIRE_LINK_GO_AWAY_WINDOW_S="2")
        rest = Rest(stack.base_url, bearer_token(stack))
        poller_rest = Rest(stack.base_url, bearer_token(stack, WATCHER), 2)
        fleet = Fleet(stack.grpc_target, LINKS, 1)
        rounds = []
        try:
            await fleet.start()
            await fleet.wait_up(60)
            first = await sweep(rest, list(range(LINKS)), 1000)
            assert len(first.latencies) == LINKS, first.failures
            for sig in (signal.SIGTERM, signal.SIGKILL):
                rounds.append(await restart(stack, fleet, rest, poller_rest, sig, ROUND_TIMEOUT_S))
                await fleet.wait_up(30)
        finally:
            await fleet.stop()
            rest.close()
            poller_rest.close()
            stack.stop(timeout=STOP_TIMEOUT_S)
        return rounds

    rounds = asyncio.run(scenario())
    for outcome in rounds:
        assert outcome["back"] == LINKS, outcome
        assert outcome["answering"] == LINKS, outcome
        assert outcome["all_answering_s"] is not None, outcome
        assert outcome["rest_failures_before_stop"] == 0, outcome
        # From the moment the new server is up, every REST poll is answered.
        assert outcome["rest_polls_while_storm"] > 0, outcome
        assert outcome["rest_failures_while_storm"] == 0, outcome
    graceful, killed = rounds
    assert graceful["signal"] == "SIGTERM"
    assert killed["signal"] == "SIGKILL"
