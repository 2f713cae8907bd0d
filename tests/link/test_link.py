"""The device link end to end in-process: a real grpc.aio server and real agents.

Every call goes through the server's `DeviceRouter` (`state.router`), as the resource APIs will.
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import random
import time
from collections.abc import Callable
from typing import Any

import grpc
import pytest
from google.protobuf import json_format
from thingwire.agent.v1 import agent_pb2, agent_pb2_grpc

from device_agent.agent import Agent, LinkRefused
from device_agent.resources import from_value, to_value
from server import errors
from server.auth import passwords
from server.link.link import DeviceKey, Link, LinkLimits
from server.link.registry import REPLACED, SHUTTING_DOWN, LinkRegistry
from server.security.hashing import hash_secret
from server.storage import devices, link_secrets
from server.storage.models import Device
from tests.link.conftest import CREDENTIALS, DEVICE, USER, LinkWorld, connected, stopped

#: Long enough never to be reached by a passing test; short enough not to hang a failing one.
GENEROUS_S = 30.0


def declare_examples(agent: Agent) -> None:
    """One resource of each kind, sync and async handlers mixed."""

    @agent.output("temperature", description="degrees Celsius", example=21.5)
    def temperature() -> float:
        return 21.5

    @agent.input("relay", example=True)
    async def relay(value: bool) -> None:
        agent_state["relay"] = value

    @agent.io("echo")
    async def echo(value: object) -> object:
        await asyncio.sleep(0.01)
        return value

    @agent.run("reset")
    def reset() -> None:
        agent_state["reset"] = True

    agent_state: dict[str, object] = {}
    agent.state = agent_state  # type: ignore[attr-defined]


class Stuck:
    """An output resource that never answers, and what its device side saw."""

    def __init__(self, agent: Agent, name: str = "wait") -> None:
        self.started = asyncio.Event()
        self.cancelled = asyncio.Event()

        @agent.output(name)
        async def wait() -> None:
            self.started.set()
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                self.cancelled.set()
                raise


def test_bad_credentials_are_refused(world: LinkWorld) -> None:
    async def scenario() -> LinkRefused:
        with pytest.raises(LinkRefused) as info:
            await asyncio.wait_for(world.agent(credentials="wrong").serve(), GENEROUS_S)
        return info.value

    refused = world.run(scenario)
    assert refused.code == grpc.StatusCode.UNAUTHENTICATED
    assert refused.details == devices.INVALID_DEVICE
    assert len(world.running.state.links) == 0


def test_a_stream_that_does_not_start_with_hello_is_refused(world: LinkWorld) -> None:
    async def scenario() -> grpc.aio.AioRpcError:
        async with grpc.aio.insecure_channel(world.target) as channel:
            stub = agent_pb2_grpc.AgentServiceStub(channel)
            result = agent_pb2.ConnectRequest(result=agent_pb2.Result(call_id=1))
            with pytest.raises(grpc.aio.AioRpcError) as info:
                async for _ in stub.Connect(iter([result])):
                    pass
            return info.value

    error = world.run(scenario)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details() == "the first message must be a Hello"


def test_the_link_secret_is_issued_and_reconnects_skip_argon2(
    world: LinkWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    checks = itertools.count()
    real = passwords.verify_password

    def counted(stored: str | None, password: str) -> bool:
        next(checks)
        return real(stored, password)

    # Link opens check credentials in the password pool (server/auth/passwords.py).
    monkeypatch.setattr(passwords, "verify_password", counted)

    async def scenario() -> tuple[str | None, int, int]:
        first = world.agent()
        await stopped(await connected(first))
        after_first = next(checks)
        second = world.agent(credentials="not-needed")
        second.link_secret = first.link_secret
        await stopped(await connected(second))
        return first.link_secret, after_first, next(checks)

    secret, after_first, after_second = world.run(scenario)
    assert secret
    assert after_first == 1  # the credentials were checked once
    assert after_second == after_first + 1  # the reconnect did not check them again
    with world.database.session() as s:
        stored = s.get(Device, s.query(Device.id).filter_by(device_id="boiler").scalar())
        assert stored is not None
        assert stored.link_secret_hash == hash_secret(secret)  # stored hashed, never in clear


def test_a_revoked_link_secret_falls_back_to_the_credentials(world: LinkWorld) -> None:
    async def scenario() -> tuple[str | None, str | None, int]:
        agent = world.agent()
        await stopped(await connected(agent))
        old = agent.link_secret
        pk = world.database.call(lambda s: devices.get_device(s, world.key.user_id, "boiler").id)
        world.database.call(lambda s: link_secrets.revoke_link_secret(s, pk))
        await stopped(await connected(agent))
        return old, agent.link_secret, agent.connections

    old, new, connections = world.run(scenario)
    assert old
    assert new
    assert new != old
    assert connections == 2


def test_declared_resources_are_visible_to_the_router(world: LinkWorld) -> None:
    async def scenario() -> dict[str, tuple[int, str, object]]:
        agent = world.agent()
        declare_examples(agent)
        task = await connected(agent)
        try:
            declared = await world.running.state.router.resources(world.key)
        finally:
            await stopped(task)
        return {
            r.name: (r.kind, r.description, from_value(r.example) if r.example else None)
            for r in declared
        }

    kind = agent_pb2.ResourceKind
    assert world.run(scenario) == {
        "temperature": (kind.RESOURCE_KIND_OUTPUT, "degrees Celsius", 21.5),
        "relay": (kind.RESOURCE_KIND_INPUT, "", True),
        "echo": (kind.RESOURCE_KIND_INPUT_OUTPUT, "", None),
        "reset": (kind.RESOURCE_KIND_NONE, "", None),
    }


def test_invoke_round_trips_for_every_kind(world: LinkWorld) -> None:
    router = world.running.state.router

    async def scenario() -> tuple[list[object], dict[str, object]]:
        agent = world.agent()
        declare_examples(agent)
        task = await connected(agent)
        try:
            answers = [
                await router.invoke(world.key, "temperature", None, GENEROUS_S),
                await router.invoke(world.key, "echo", to_value({"a": [1, "b"]}), GENEROUS_S),
                await router.invoke(world.key, "relay", to_value(False), GENEROUS_S),
                await router.invoke(world.key, "reset", None, GENEROUS_S),
            ]
        finally:
            await stopped(task)
        return [from_value(a) for a in answers], agent.state  # type: ignore[attr-defined]

    answers, state = world.run(scenario)
    assert answers == [21.5, {"a": [1, "b"]}, None, None]
    assert state == {"relay": False, "reset": True}


def test_two_hundred_concurrent_invocations_over_one_stream(world: LinkWorld) -> None:
    router = world.running.state.router

    async def scenario() -> list[object]:
        agent = world.agent()
        declare_examples(agent)
        task = await connected(agent)
        try:
            answers = await asyncio.gather(
                *(router.invoke(world.key, "echo", to_value(i), GENEROUS_S) for i in range(200))
            )
        finally:
            await stopped(task)
        return [from_value(a) for a in answers]

    assert world.run(scenario) == [float(i) for i in range(200)]


def test_calls_past_the_in_flight_limit_are_throttled_at_once(
    make_world: Callable[[LinkLimits], LinkWorld],
) -> None:
    world = make_world(LinkLimits(max_calls_in_flight=2))
    router = world.running.state.router

    async def scenario() -> tuple[errors.Throttled, float, list[object]]:
        release, running = asyncio.Event(), asyncio.Semaphore(0)
        agent = world.agent()

        @agent.io("slow")
        async def slow(value: object) -> object:
            running.release()
            await release.wait()
            return value

        task = await connected(agent)
        try:
            calls = [
                asyncio.create_task(router.invoke(world.key, "slow", to_value(i), GENEROUS_S))
                for i in range(2)
            ]
            for _ in range(2):
                await asyncio.wait_for(running.acquire(), GENEROUS_S)
            started = time.monotonic()
            with pytest.raises(errors.Throttled) as info:
                await router.invoke(world.key, "slow", to_value(3), GENEROUS_S)
            waited = time.monotonic() - started
            release.set()
            answers = [from_value(a) for a in await asyncio.gather(*calls)]
        finally:
            await stopped(task)
        return info.value, waited, answers

    throttled, waited, answers = world.run(scenario)
    assert "2 calls in flight" in throttled.message
    assert waited < 1.0
    assert answers == [0.0, 1.0]  # the calls in flight were not disturbed


def test_a_slow_handler_gives_deadline_exceeded_and_is_cancelled(world: LinkWorld) -> None:
    router = world.running.state.router

    async def scenario() -> tuple[errors.DeadlineExceeded, bool]:
        agent = world.agent()
        stuck = Stuck(agent, "slow")
        task = await connected(agent)
        try:
            with pytest.raises(errors.DeadlineExceeded) as info:
                await router.invoke(world.key, "slow", None, 0.2)
            await asyncio.wait_for(stuck.cancelled.wait(), GENEROUS_S)
        finally:
            await stopped(task)
        return info.value, stuck.cancelled.is_set()

    exceeded, cancelled = world.run(scenario)
    assert exceeded.message == "device 'boiler' did not answer in time"
    assert cancelled


def test_a_caller_that_goes_away_cancels_the_call_on_the_device(world: LinkWorld) -> None:
    router = world.running.state.router

    async def scenario() -> int:
        agent = world.agent()
        stuck = Stuck(agent)
        task = await connected(agent)
        try:
            caller = asyncio.create_task(router.invoke(world.key, "wait", None, GENEROUS_S))
            await asyncio.wait_for(stuck.started.wait(), GENEROUS_S)
            caller.cancel()
            await asyncio.wait_for(stuck.cancelled.wait(), GENEROUS_S)
            link = world.running.state.links.get(world.key)
            assert link is not None
            return link.calls_in_flight
        finally:
            await stopped(task)

    assert world.run(scenario) == 0


def test_a_device_that_disconnects_mid_call_fails_the_call_at_once(world: LinkWorld) -> None:
    router = world.running.state.router

    async def scenario() -> tuple[errors.Unavailable, float]:
        agent = world.agent()
        stuck = Stuck(agent)
        task = await connected(agent)
        caller = asyncio.create_task(router.invoke(world.key, "wait", None, GENEROUS_S))
        await asyncio.wait_for(stuck.started.wait(), GENEROUS_S)
        begun = time.monotonic()
        await stopped(task)  # the agent goes away with the call in flight
        with pytest.raises(errors.Unavailable) as info:
            await caller
        return info.value, time.monotonic() - begun

    unavailable, waited = world.run(scenario)
    assert unavailable.message.startswith("device disconnected")
    assert waited < 5.0  # not the call's 30 s deadline


def test_an_offline_device_and_an_unknown_resource_are_not_found(world: LinkWorld) -> None:
    router = world.running.state.router

    async def scenario() -> tuple[str, str]:
        with pytest.raises(errors.NotFound) as offline:
            await router.invoke(world.key, "temperature", None, GENEROUS_S)
        agent = world.agent()
        declare_examples(agent)
        task = await connected(agent)
        try:
            with pytest.raises(errors.NotFound) as unknown:
                await router.invoke(world.key, "humidity", None, GENEROUS_S)
        finally:
            await stopped(task)
        return offline.value.message, unknown.value.message

    assert world.run(scenario) == (
        "device 'boiler' is not connected",
        "resource 'humidity' not found",
    )


def test_a_second_connection_replaces_the_first(world: LinkWorld) -> None:
    router = world.running.state.router

    async def scenario() -> tuple[errors.Unavailable, LinkRefused, object]:
        first = world.agent()
        stuck = Stuck(first, "who")
        first_task = await connected(first)
        pending = asyncio.create_task(router.invoke(world.key, "who", None, GENEROUS_S))
        await asyncio.wait_for(stuck.started.wait(), GENEROUS_S)
        second = world.agent()
        second.output("who")(lambda: "second")
        second_task = await connected(second)
        try:
            with pytest.raises(errors.Unavailable) as failed:
                await asyncio.wait_for(pending, GENEROUS_S)
            with pytest.raises(LinkRefused) as refused:
                await asyncio.wait_for(first_task, GENEROUS_S)
            answer = from_value(await router.invoke(world.key, "who", None, GENEROUS_S))
        finally:
            await stopped(second_task)
        return failed.value, refused.value, answer

    failed, refused, answer = world.run(scenario)
    assert REPLACED in failed.message
    assert refused.code == grpc.StatusCode.FAILED_PRECONDITION
    assert refused.details == REPLACED
    assert answer == "second"


def test_the_agent_reconnects_after_a_server_restart_and_declares_again(
    world: LinkWorld,
) -> None:
    async def scenario() -> tuple[int, object, bool]:
        agent = world.agent()
        declare_examples(agent)
        task = await connected(agent)
        try:
            await world.restart()
            deadline = time.monotonic() + GENEROUS_S
            # The agent's counter is its only record of a reconnect; poll it briefly.
            while agent.connections < 2 and time.monotonic() < deadline:  # noqa: ASYNC110
                await asyncio.sleep(0.02)
            answer = await world.running.state.router.invoke(
                world.key, "temperature", None, GENEROUS_S
            )
        finally:
            await stopped(task)
        return agent.connections, from_value(answer), agent.link_secret is not None

    connections, answer, has_secret = world.run(scenario)
    assert connections == 2
    assert answer == 21.5
    assert has_secret


def test_a_handler_that_raises_gives_its_message_and_the_agent_carries_on(
    world: LinkWorld,
) -> None:
    router = world.running.state.router

    async def scenario() -> tuple[str, object]:
        agent = world.agent()
        declare_examples(agent)

        @agent.output("broken")
        def broken() -> None:
            raise OSError("sensor unplugged")

        task = await connected(agent)
        try:
            with pytest.raises(errors.FailedPrecondition) as info:
                await router.invoke(world.key, "broken", None, GENEROUS_S)
            after = await router.invoke(world.key, "temperature", None, GENEROUS_S)
        finally:
            await stopped(task)
        return info.value.message, from_value(after)

    message, after = world.run(scenario)
    assert message == "the device reported an error: sensor unplugged"
    assert after == 21.5


def test_a_repeated_resource_name_is_refused_by_the_server(world: LinkWorld) -> None:
    async def scenario() -> grpc.aio.AioRpcError:
        declaration = agent_pb2.ResourceDeclaration(name="x", kind=agent_pb2.RESOURCE_KIND_OUTPUT)
        hello = agent_pb2.Hello(
            user="ada", device="boiler", credentials=CREDENTIALS, resources=[declaration] * 2
        )
        async with grpc.aio.insecure_channel(world.target) as channel:
            stub = agent_pb2_grpc.AgentServiceStub(channel)
            with pytest.raises(grpc.aio.AioRpcError) as info:
                async for _ in stub.Connect(iter([agent_pb2.ConnectRequest(hello=hello)])):
                    pass
            return info.value

    error = world.run(scenario)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details() == "resource 'x' is declared twice"


def test_values_convert_both_ways() -> None:
    values: list[object] = [None, 1.5, "text", True, [1.0, "a"], {"nested": {"list": []}}]
    for value in values:
        assert from_value(to_value(value) if value is not None else None) == value
    assert json_format.MessageToDict(to_value({"a": 1})) == {"a": 1}


def test_a_graceful_stop_tells_each_device_when_to_come_back(
    make_world: Callable[[LinkLimits], LinkWorld],
) -> None:
    """The stream's last message is a GoAway within the window; then it ends UNAVAILABLE."""
    world = make_world(LinkLimits(go_away_window_s=0.5))
    hello = agent_pb2.Hello(user=USER, device=DEVICE, credentials=CREDENTIALS)

    async def scenario() -> tuple[list[agent_pb2.ConnectResponse], grpc.aio.AioRpcError]:
        async with grpc.aio.insecure_channel(world.target) as channel:
            stub = agent_pb2_grpc.AgentServiceStub(channel)
            call = stub.Connect()
            await call.write(agent_pb2.ConnectRequest(hello=hello))
            received = [await call.read()]
            await world.running.stop(1)
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await _read_to_the_end(call, received)
            return received, info.value

    received, error = world.run(scenario)
    assert [m.WhichOneof("kind") for m in received] == ["welcome", "go_away"]
    assert 0 <= received[1].go_away.reconnect_after_ms <= 500
    assert received[1].go_away.reason == SHUTTING_DOWN
    assert error.code() == grpc.StatusCode.UNAVAILABLE


def test_a_graceful_stop_keeps_live_objects_out_of_the_collector_until_it_ends(
    make_world: Callable[[LinkLimits], LinkWorld], monkeypatch: pytest.MonkeyPatch
) -> None:
    """While the links are sent away and their streams end, the objects alive at the stop
    are frozen (no full collection walks them); afterwards the collector has them again."""
    world = make_world(LinkLimits(go_away_window_s=0.5))
    hello = agent_pb2.Hello(user=USER, device=DEVICE, credentials=CREDENTIALS)
    frozen_while_sending_away: list[int] = []
    go_away_all = world.running.state.links.go_away_all

    def sending_away(window_s: float) -> list[int]:
        frozen_while_sending_away.append(gc.get_freeze_count())
        return go_away_all(window_s)

    monkeypatch.setattr(world.running.state.links, "go_away_all", sending_away)

    async def scenario() -> list[agent_pb2.ConnectResponse]:
        async with grpc.aio.insecure_channel(world.target) as channel:
            call = agent_pb2_grpc.AgentServiceStub(channel).Connect()
            await call.write(agent_pb2.ConnectRequest(hello=hello))
            received = [await call.read()]
            await world.running.stop(1)
            with pytest.raises(grpc.aio.AioRpcError):
                await _read_to_the_end(call, received)
            return received

    before = gc.get_freeze_count()
    received = world.run(scenario)
    assert [m.WhichOneof("kind") for m in received] == ["welcome", "go_away"]
    assert len(frozen_while_sending_away) == 1
    assert frozen_while_sending_away[0] > before  # the live link among them
    assert gc.get_freeze_count() == 0


async def _read_to_the_end(call: Any, received: list[agent_pb2.ConnectResponse]) -> None:
    while (message := await call.read()) is not grpc.aio.EOF:
        received.append(message)


def test_devices_sent_away_come_back_spread_over_the_window() -> None:
    registry = LinkRegistry()
    links = [Link(DeviceKey(1, f"d{n}"), {}, 1) for n in range(200)]
    for link in links:
        registry.attach(link)
    delays = registry.go_away_all(5.0, random.Random(7))
    assert len(delays) == 200
    assert all(0 <= delay <= 5000 for delay in delays)
    assert min(delays) < 500  # spread over the window, not one burst
    assert max(delays) > 4500
    assert all(link.closed is not None for link in links)
