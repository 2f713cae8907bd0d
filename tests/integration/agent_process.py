"""`thingwire agent` with resources for tests that no real device would declare.

    python -m tests.integration.agent_process [the options of `thingwire agent`]

It is the command's agent (the same options, `--simulate` included, the same log, signals
and exit codes: `device_agent.cli`), with these resources declared after the others:

| resource | kind | what it does |
|---|---|---|
| `echo` | input/output | gives its input back |
| `api` | input/output | `{"called": <input>}`: a resource that `GET …/api` shadows |
| `open`, `close` | no parameters | the door of the seed's device-token example |
| `hold` | input/output | waits for SIGUSR1, then gives its input back |

`hold` is a slow device, or calls kept in flight on purpose.

`hold` logs `holding N calls` each time a call arrives (N: how many it holds now) and
`hold cancelled` when a call is cancelled (the server's Cancel, or its deadline): tests read
the agent's log to see what the device saw. `tests/integration/agents.py` starts it
(`AgentProcess(..., test_resources=True)`).
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections.abc import Sequence

from device_agent.agent import Agent
from device_agent.cli import build_agent, build_parser, serve

log = logging.getLogger("tests.agent")


def declare_test_resources(agent: Agent) -> None:
    """The resources in the table above."""
    held = 0
    release: asyncio.Event | None = None

    @agent.io("echo")
    async def echo(value: object) -> object:
        return value

    @agent.io("api")
    async def api(value: object) -> object:
        return {"called": value}

    @agent.run("open")
    async def open_door() -> None:
        log.info("door opened")

    @agent.run("close")
    async def close_door() -> None:
        log.info("door closed")

    @agent.io("hold")
    async def hold(value: object) -> object:
        nonlocal held, release
        if release is None:  # the first call: the loop is running now
            release = asyncio.Event()
            asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, release_all)
        held += 1
        log.info("holding %d calls", held)
        try:
            await release.wait()
        except asyncio.CancelledError:
            log.info("hold cancelled")
            raise
        finally:
            held -= 1
        return value

    def release_all() -> None:
        nonlocal release
        assert release is not None
        release.set()
        release = asyncio.Event()  # later calls wait for the next signal
        log.info("released")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    signal.signal(signal.SIGUSR1, signal.SIG_IGN)  # until a call holds: nothing to release
    agent = build_agent(args)
    declare_test_resources(agent)
    return serve(agent, args.server)


if __name__ == "__main__":
    sys.exit(main())
