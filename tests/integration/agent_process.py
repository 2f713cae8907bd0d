"""A device agent in a process of its own, for tests that stop or kill it like a real device.

    python -m tests.integration.agent_process HOST:PORT USER DEVICE CREDENTIALS

It declares an `echo` input/output resource and runs until killed. Each opened link is
logged by the agent ("link open") on stderr.
"""

from __future__ import annotations

import asyncio
import logging
import sys

from device_agent.agent import Agent
from device_agent.backoff import Backoff
from device_agent.channel import insecure_channel_factory


def main(target: str, user: str, device: str, credentials: str) -> None:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    agent = Agent(
        insecure_channel_factory(target),
        user=user,
        device=device,
        credentials=credentials,
        backoff=Backoff(base_s=0.1, cap_s=0.5),
    )

    @agent.io("echo")
    def echo(value: object) -> object:
        return value

    asyncio.run(agent.serve())


if __name__ == "__main__":
    main(*sys.argv[1:5])
