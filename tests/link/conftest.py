"""A real in-process server with one user and one device, and agents that connect to it.

Scenarios are coroutines run on one `LoopThread`: the server, its links and the agents all
live on that loop, as they would in their own processes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import grpc
import pytest

from device_agent.agent import Agent
from device_agent.backoff import Backoff
from server.app import RunningServer, create_server
from server.link.link import DeviceKey, LinkLimits
from server.security.keys import KeyRing
from server.storage import devices, users
from server.storage.db import Database
from tests.support import LoopThread

T = TypeVar("T")

USER = "ada"
DEVICE = "boiler"
CREDENTIALS = "device-s3cret"
#: Reconnect quickly in tests; the delays themselves are tested in test_backoff.py.
FAST = Backoff(base_s=0.02, cap_s=0.1)


def agent_for(target: str, credentials: str = CREDENTIALS, device: str = DEVICE) -> Agent:
    """An agent of ada's device that connects to the server at `target` (HOST:PORT)."""
    return Agent(
        lambda: grpc.aio.insecure_channel(target),
        user=USER,
        device=device,
        credentials=credentials,
        backoff=FAST,
    )


@dataclass
class LinkWorld:
    """The server under test, its device, and a way to make agents for it."""

    loop: LoopThread
    database: Database
    running: RunningServer
    key: DeviceKey
    limits: LinkLimits

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.running.port}"

    def agent(self, credentials: str = CREDENTIALS, device: str = DEVICE) -> Agent:
        return agent_for(self.target, credentials, device)

    def run(self, scenario: Callable[[], Awaitable[T]]) -> T:
        return self.loop.run(scenario, timeout=60)

    async def restart(self) -> None:
        """Stop the server and start a new one on the same port and database."""
        port = self.running.port
        await self.running.stop(0)
        self.running = await create_server(
            self.database, f"127.0.0.1:{port}", keys=KeyRing.generate(), link_limits=self.limits
        )


async def connected(agent: Agent) -> asyncio.Task[None]:
    """Start `agent` and return its task once its link is open."""
    task = asyncio.create_task(agent.serve())
    waiting = asyncio.create_task(agent.connected.wait())
    await asyncio.wait({task, waiting}, timeout=30, return_when=asyncio.FIRST_COMPLETED)
    if not waiting.done():
        waiting.cancel()
        if task.done():
            task.result()  # raises the agent's error
        raise AssertionError("the agent did not connect")
    return task


async def stopped(task: asyncio.Task[None]) -> None:
    """Cancel an agent's task and wait until it has ended."""
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


@pytest.fixture(autouse=True)
def _agent_state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Agents built from the command's settings keep their outbox and log in the test's
    directory, never in the checkout's `var/agent`."""
    monkeypatch.setenv("THINGWIRE_AGENT_STATE_DIR", str(tmp_path / "agent"))


@pytest.fixture
def make_world(database: Database) -> Iterator[Callable[[LinkLimits], LinkWorld]]:
    """Starts the world with the given limits (once per test)."""
    loop = LoopThread()
    worlds: list[LinkWorld] = []
    with database.session() as s:
        user = users.create_user(s, "ada@example.com", "a-long-password", username=USER)
        devices.create_device(s, user.id, DEVICE, CREDENTIALS, description="the boiler")
        devices.create_device(s, user.id, "other", "other-credentials")
        key = DeviceKey(user.id, DEVICE)

    def make(limits: LinkLimits) -> LinkWorld:
        running = loop.run(
            lambda: create_server(database, keys=KeyRing.generate(), link_limits=limits)
        )
        world = LinkWorld(loop, database, running, key, limits)
        worlds.append(world)
        return world

    try:
        yield make
    finally:
        for world in worlds:
            loop.run(lambda w=world: w.running.stop(0))  # type: ignore[misc]
        loop.close()


@pytest.fixture
def world(make_world: Callable[[LinkLimits], LinkWorld]) -> LinkWorld:
    return make_world(LinkLimits(max_calls_in_flight=256, go_away_window_s=0.2))
