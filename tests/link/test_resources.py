"""Resource handlers: plain functions run off the event loop, coroutine functions on it."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from thingwire.agent.v1 import agent_pb2

from device_agent.resources import ResourceHandler, from_value, to_value

OUTPUT = agent_pb2.RESOURCE_KIND_OUTPUT
IO = agent_pb2.RESOURCE_KIND_INPUT_OUTPUT


def test_a_blocking_sync_handler_leaves_the_loop_free() -> None:
    """The handler blocks until a task on the loop releases it: on the loop it would wait
    out its timeout instead (and answer False)."""
    released = threading.Event()
    threads: list[int] = []

    def blocking() -> bool:
        threads.append(threading.get_ident())
        return released.wait(timeout=5)

    async def scenario() -> tuple[Any, int]:
        async def release() -> None:
            await asyncio.sleep(0.01)
            released.set()

        releasing = asyncio.create_task(release())
        answer = await ResourceHandler("wait", OUTPUT, blocking).call(None)
        await releasing
        return from_value(answer), threading.get_ident()

    answer, loop_thread = asyncio.run(scenario())
    assert answer is True
    assert threads != [loop_thread]


def test_an_async_handler_runs_on_the_loop() -> None:
    threads: list[int] = []

    async def echo(value: Any) -> Any:
        threads.append(threading.get_ident())
        return value

    async def scenario() -> tuple[Any, int]:
        answer = await ResourceHandler("echo", IO, echo).call(to_value({"a": 1}))
        return from_value(answer), threading.get_ident()

    answer, loop_thread = asyncio.run(scenario())
    assert answer == {"a": 1}
    assert threads == [loop_thread]


def test_a_plain_callable_that_returns_an_awaitable_is_awaited() -> None:
    class Sensor:
        """An object with an async __call__: not a coroutine function to inspect."""

        async def __call__(self) -> float:
            await asyncio.sleep(0)
            return 21.5

    async def scenario() -> list[Any]:
        async def read() -> str:
            return "from a lambda"

        answers = [
            await ResourceHandler("sensor", OUTPUT, Sensor()).call(None),
            await ResourceHandler("lambda", OUTPUT, lambda: read()).call(None),
        ]
        return [from_value(a) for a in answers]

    assert asyncio.run(scenario()) == [21.5, "from a lambda"]
