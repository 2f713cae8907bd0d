"""The agent against a scripted server: what it does with GoAway and with messages it gets."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
from thingwire.agent.v1 import agent_pb2, agent_pb2_grpc

from device_agent.agent import Agent
from device_agent.backoff import Backoff
from tests.support import LoopThread

#: So slow that an agent reconnecting within the test can only have followed a GoAway.
GLACIAL = Backoff(base_s=600.0, cap_s=600.0, rng=lambda: 0.99)


class GoingAway(agent_pb2_grpc.AgentServiceServicer):
    """Welcomes each Hello, then says: go away, come back in 50 ms; counts the Hellos."""

    def __init__(self) -> None:
        self.hellos = 0
        self.second = asyncio.Event()

    async def Connect(
        self, requests: AsyncIterator[agent_pb2.ConnectRequest], context: object
    ) -> AsyncIterator[agent_pb2.ConnectResponse]:
        await anext(aiter(requests))
        self.hellos += 1
        if self.hellos >= 2:
            self.second.set()
        yield agent_pb2.ConnectResponse(welcome=agent_pb2.Welcome(link_secret="s"))
        yield agent_pb2.ConnectResponse(
            go_away=agent_pb2.GoAway(reconnect_after_ms=50, reason="restarting")
        )


def test_the_agent_comes_back_after_the_go_away_delay_not_its_backoff() -> None:
    loop = LoopThread()

    async def scenario() -> tuple[int, str | None]:
        servicer = GoingAway()
        server = grpc.aio.server()
        agent_pb2_grpc.add_AgentServiceServicer_to_server(servicer, server)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        agent = Agent(
            lambda: grpc.aio.insecure_channel(f"127.0.0.1:{port}"),
            user="ada",
            device="boiler",
            credentials="c",
            backoff=GLACIAL,
        )
        task = asyncio.create_task(agent.serve())
        try:
            await asyncio.wait_for(servicer.second.wait(), 10)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await server.stop(0)
        return servicer.hellos, agent.link_secret

    try:
        hellos, secret = loop.run(scenario)
    finally:
        loop.close()
    assert hellos >= 2
    assert secret == "s"
