"""Streams that abuse the device link: held open without a Hello, oversized declarations,
ids no device can have. The server must bound what each costs and answer every one."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable

import grpc
import pytest
from thingwire.agent.v1 import agent_pb2, agent_pb2_grpc

from server.link.link import LinkLimits
from tests.link.conftest import CREDENTIALS, DEVICE, USER, LinkWorld

OUTPUT = agent_pb2.RESOURCE_KIND_OUTPUT


async def refusal(world: LinkWorld, hello: agent_pb2.Hello) -> grpc.aio.AioRpcError:
    """How the server ends a stream that opens with `hello`."""
    async with grpc.aio.insecure_channel(world.target) as channel:
        stub = agent_pb2_grpc.AgentServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as info:
            async for _ in stub.Connect(iter([agent_pb2.ConnectRequest(hello=hello)])):
                pass
        return info.value


def hello_with(*declarations: agent_pb2.ResourceDeclaration) -> agent_pb2.Hello:
    return agent_pb2.Hello(
        user=USER, device=DEVICE, credentials=CREDENTIALS, resources=list(declarations)
    )


def test_a_stream_that_never_says_hello_is_ended(
    make_world: Callable[[LinkLimits], LinkWorld],
) -> None:
    world = make_world(LinkLimits(hello_timeout_s=0.5))

    async def silent() -> AsyncIterator[agent_pb2.ConnectRequest]:
        await asyncio.Event().wait()  # holds the stream open, sends nothing
        yield agent_pb2.ConnectRequest()  # pragma: no cover

    async def scenario() -> tuple[grpc.aio.AioRpcError, float]:
        async with grpc.aio.insecure_channel(world.target) as channel:
            stub = agent_pb2_grpc.AgentServiceStub(channel)
            started = time.monotonic()
            with pytest.raises(grpc.aio.AioRpcError) as info:
                async for _ in stub.Connect(silent(), timeout=30):
                    pass
            return info.value, time.monotonic() - started

    error, took = world.run(scenario)
    assert error.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert error.details() == "no Hello within 0.5 s"
    assert took < 5
