"""Relayed commands between replicas: the agent is linked to replica A and every command is
run through replica B's `NatsRouter`, so each crossed NATS (B holds no link: checked). The
holder applies the link's rules, so the answers, statuses and limits are those of one
process (tests/link/test_command_relay.py)."""

from __future__ import annotations

import asyncio

import orjson
import pytest

from server import errors
from server.link import commands
from server.link.link import DeviceKey
from tests.link.conftest import connected, stopped
from tests.link.test_command_relay import FakeRunner
from tests.link.test_nats_router import GENEROUS_S, Replicas, nats_process, replicas

__all__ = ["nats_process", "replicas"]  # the fixtures, used by name


def test_commands_run_on_the_device_held_by_the_other_replica(replicas: Replicas) -> None:
    runner = FakeRunner()

    async def scenario() -> tuple[bytes, bytes, bytes, int]:
        agent = replicas.agent(replicas.a)
        agent.commands = runner
        task = await connected(agent)
        try:
            router = replicas.router_b
            echoed = await router.command(
                replicas.key, commands.structured("test.echo", ["ls", "-l"], {"n": 2**60}), 5
            )
            raw = await router.command(replicas.key, commands.raw("cmd.run ls -l"), 5)
            true = await router.command(replicas.key, commands.structured("test.true", [], {}), 5)
            return echoed, raw, true, len(replicas.b.state.links)
        finally:
            await stopped(task)

    echoed, raw, true, held_by_b = replicas.run(scenario)
    assert orjson.loads(echoed) == {"args": ["ls", "-l"], "kwargs": {"n": 2**60}}
    assert orjson.loads(raw) == {"line": "cmd.run ls -l"}
    assert true == b"true"
    assert held_by_b == 0


def test_failures_offline_and_limits_mean_the_same_across_replicas(replicas: Replicas) -> None:
    runner = FakeRunner()

    async def scenario() -> dict[str, errors.ThingwireError]:
        router = replicas.router_b
        seen: dict[str, errors.ThingwireError] = {}
        true = commands.structured("test.true", [], {})
        with pytest.raises(errors.NotFound) as offline:
            await router.command(replicas.key, true, 5)
        seen["offline"] = offline.value
        with pytest.raises(errors.NotFound) as unroutable:
            await router.command(DeviceKey(replicas.key.user_id, "no.such device"), true, 5)
        seen["unroutable"] = unroutable.value
        agent = replicas.agent(replicas.a)
        agent.commands = runner
        task = await connected(agent)
        try:
            for name in ("test.fail", "test.busy", "test.slow", "test.crash"):
                with pytest.raises(errors.ThingwireError) as failed:
                    await router.command(replicas.key, commands.structured(name, [], {}), 5)
                seen[name] = failed.value
            hold = commands.structured("test.hold", [], {})
            held = [asyncio.create_task(router.command(replicas.key, hold, 0.5)) for _ in range(2)]
            await asyncio.wait_for(runner.held.wait(), GENEROUS_S)
            await asyncio.sleep(0.05)
            with pytest.raises(errors.Throttled) as throttled:
                await router.command(replicas.key, true, 0.5)
            seen["throttled"] = throttled.value
            with pytest.raises(errors.DeadlineExceeded) as exceeded:
                await held[0]
            seen["deadline"] = exceeded.value
            await asyncio.gather(held[1], return_exceptions=True)
            await asyncio.wait_for(runner.cancelled.wait(), GENEROUS_S)
        finally:
            await stopped(task)
        return seen

    seen = replicas.run(scenario)
    assert type(seen["offline"]) is errors.NotFound
    assert seen["offline"].message == "device 'boiler' is not connected"
    assert type(seen["unroutable"]) is errors.NotFound
    assert type(seen["test.fail"]) is errors.InvalidArgument
    assert seen["test.fail"].message == "'test.fail' is not available"
    assert type(seen["test.busy"]) is errors.Unavailable
    assert type(seen["test.slow"]) is errors.DeadlineExceeded
    assert type(seen["test.crash"]) is errors.BadGateway  # its 502 crossed too
    assert seen["test.crash"].message == "the command failed on the device: RuntimeError: boom"
    assert "2 calls in flight" in seen["throttled"].message
    assert seen["deadline"].message == "device 'boiler' did not answer in time"
    assert runner.cancelled.is_set()


def test_a_caller_that_goes_away_cancels_the_command_on_the_other_replica(
    replicas: Replicas,
) -> None:
    runner = FakeRunner()

    async def scenario() -> bool:
        agent = replicas.agent(replicas.a)
        agent.commands = runner
        task = await connected(agent)
        try:
            caller = asyncio.create_task(
                replicas.router_b.command(
                    replicas.key, commands.structured("test.hold", [], {}), GENEROUS_S
                )
            )
            await asyncio.wait_for(runner.held.wait(), GENEROUS_S)
            caller.cancel()
            await asyncio.wait_for(runner.cancelled.wait(), 5)
            return runner.cancelled.is_set()
        finally:
            await stopped(task)

    assert replicas.run(scenario)
