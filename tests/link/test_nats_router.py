"""Two replicas in-process on one database and a nats-server of the test's own: calls,
listings, figures, replacement and outages through `NatsRouter`.

The agent connects to replica A; every call is made through replica B's router, which
holds no link, so each answer crossed NATS (B's registry stays empty: checked).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TypeVar

import grpc
import pytest
import sqlalchemy as sa

from device_agent.agent import Agent, LinkRefused
from device_agent.resources import from_value, to_value
from server import errors
from server.app import RunningServer, create_server
from server.config import ConfigError, Settings
from server.link.link import DeviceKey, LinkLimits
from server.link.nats_links import BROKER_DOWN, NatsLinks
from server.link.nats_router import NatsRouter
from server.link.registry import REPLACED
from server.security.keys import KeyRing
from server.storage import devices, users
from server.storage.db import Database
from server.storage.models import Device
from tests.link.conftest import CREDENTIALS, DEVICE, USER, agent_for, connected, stopped
from tests.link.test_link import Stuck, declare_examples
from tests.nats_process import NatsProcess, nats_process
from tests.support import LoopThread

__all__ = ["nats_process"]  # the fixture, used by name

T = TypeVar("T")
GENEROUS_S = 30.0


@dataclass
class Replicas:
    loop: LoopThread
    database: Database
    a: RunningServer
    b: RunningServer
    key: DeviceKey
    nats: NatsProcess

    def agent(self, server: RunningServer) -> Agent:
        return agent_for(f"127.0.0.1:{server.port}")

    @property
    def router_b(self) -> NatsRouter:
        router = self.b.state.router
        assert isinstance(router, NatsRouter)
        return router

    def run(self, scenario: Callable[[], Awaitable[T]]) -> T:
        return self.loop.run(scenario, timeout=90)


def links(server: RunningServer) -> NatsLinks:
    assert isinstance(server.state.links, NatsLinks)
    return server.state.links


async def eventually(check: Callable[[], bool], within_s: float = 10.0) -> None:
    deadline = time.monotonic() + within_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("the condition did not come true in time")
        await asyncio.sleep(0.02)


@pytest.fixture
def replicas(database: Database, nats_process: NatsProcess) -> Iterator[Replicas]:
    loop = LoopThread()
    with database.session() as s:
        user = users.create_user(s, "ada@example.com", "a-long-password", username=USER)
        devices.create_device(s, user.id, DEVICE, CREDENTIALS)
        key = DeviceKey(user.id, DEVICE)
    keys = KeyRing.generate()
    limits = LinkLimits(max_calls_in_flight=2, go_away_window_s=0.2)

    async def start() -> RunningServer:
        running = await create_server(
            database, keys=keys, link_limits=limits, nats_url=nats_process.url
        )
        await asyncio.wait_for(links(running).ready.wait(), 10)
        return running

    a = loop.run(start)
    b = loop.run(start)
    try:
        yield Replicas(loop, database, a, b, key, nats_process)
    finally:
        for server in (a, b):
            loop.run(lambda s=server: s.stop(0))  # type: ignore[misc]
        loop.close()


def test_a_call_on_the_replica_without_the_stream_reaches_the_device(
    replicas: Replicas,
) -> None:
    async def scenario() -> tuple[object, object, list[str], int]:
        agent = replicas.agent(replicas.a)
        declare_examples(agent)
        task = await connected(agent)
        try:
            echoed = from_value(
                await replicas.router_b.invoke(replicas.key, "echo", to_value({"x": [1, 2]}), 5)
            )
            nothing = await replicas.router_b.invoke(replicas.key, "relay", to_value(True), 5)
            listed = [r.name for r in await replicas.router_b.resources(replicas.key)]
            return echoed, nothing, sorted(listed), len(replicas.b.state.links)
        finally:
            await stopped(task)

    echoed, nothing, listed, held_by_b = replicas.run(scenario)
    assert echoed == {"x": [1.0, 2.0]}
    assert nothing is None
    assert listed == ["echo", "relay", "reset", "temperature"]
    assert held_by_b == 0  # B called over NATS: it holds no link


def test_offline_and_unknown_resources_are_not_found_and_bad_input_is_invalid(
    replicas: Replicas,
) -> None:
    async def scenario() -> tuple[str, str, str, str]:
        router = replicas.router_b
        with pytest.raises(errors.NotFound) as offline:
            await router.invoke(replicas.key, "temperature", None, 5)
        with pytest.raises(errors.NotFound) as offline_listing:
            await router.resources(replicas.key)
        agent = replicas.agent(replicas.a)
        declare_examples(agent)
        task = await connected(agent)
        try:
            with pytest.raises(errors.NotFound) as unknown:
                await router.invoke(replicas.key, "humidity", None, 5)
            with pytest.raises(errors.InvalidArgument) as bad:
                await router.invoke(replicas.key, "relay", None, 5)
        finally:
            await stopped(task)
        return (
            offline.value.message,
            offline_listing.value.message,
            unknown.value.message,
            bad.value.message,
        )

    assert replicas.run(scenario) == (
        "device 'boiler' is not connected",
        "device 'boiler' is not connected",
        "resource 'humidity' not found",
        "resource 'relay' takes an input value",
    )


#: Device ids a caller may send that no device can have: each would change the subject's
#: tokens, be a wildcard, or break the NATS protocol line the subject is written into.
IMPOSSIBLE_IDS = ("a b", "a.b", "*", ">", "", "a\tb", "\u00e9t\u00e9", "x" * 26)


def test_a_device_id_no_device_can_have_is_offline_and_never_reaches_nats(
    replicas: Replicas,
) -> None:
    async def scenario() -> tuple[list[str], bool, bool]:
        agent = replicas.agent(replicas.a)
        declare_examples(agent)
        task = await connected(agent)
        router = replicas.router_b
        user = replicas.key.user_id
        # A call naming this id once wrote a second command into B's connection: here,
        # one that closes the real device's link on A.
        injected = (
            f"x 0\r\n\r\nHPUB thingwire.device.{user}.{DEVICE} 36 36\r\n"
            "NATS/1.0\r\nOp: close\r\nReason: x\r\n\r\n\r\nPUB y"
        )
        messages = []
        try:
            for device_id in (*IMPOSSIBLE_IDS, injected):
                key = DeviceKey(user, device_id)
                with pytest.raises(errors.NotFound) as offline:
                    await router.invoke(key, "echo", None, 1)
                messages.append(offline.value.message)
                with pytest.raises(errors.NotFound):
                    await router.resources(key)
                assert await router.figures(key) is None
                await router.close(key, "gone")
                async with router.watching(key):
                    await asyncio.sleep(0.05)
            await asyncio.sleep(0.5)
            link = links(replicas.a).get(replicas.key)
            still_open = link is not None and link.closed is None
            return messages, still_open, links(replicas.b).nc.is_connected
        finally:
            await stopped(task)

    messages, still_open, connected_b = replicas.run(scenario)
    assert all(m.endswith("is not connected") for m in messages)
    assert still_open
    assert connected_b


def test_a_resource_name_arrives_as_it_was_asked_for(replicas: Replicas) -> None:
    async def scenario() -> list[str]:
        agent = replicas.agent(replicas.a)
        declare_examples(agent)
        task = await connected(agent)
        messages = []
        try:
            for name in ("echo ", " echo", "echo\r\n", "ech%6F"):
                with pytest.raises(errors.NotFound) as unknown:
                    await replicas.router_b.invoke(replicas.key, name, None, 5)
                messages.append(unknown.value.message)
        finally:
            await stopped(task)
        return messages

    assert replicas.run(scenario) == [
        "resource 'echo ' not found",
        "resource ' echo' not found",
        "resource 'echo\\r\\n' not found",
        "resource 'ech%6F' not found",
    ]


def test_an_answer_larger_than_a_nats_message_is_refused_at_once(replicas: Replicas) -> None:
    # nats-server takes 1 MiB per message by default: a larger answer cannot cross, and
    # the caller must hear so at once rather than wait out its deadline.
    async def scenario() -> tuple[str, str, float]:
        agent = replicas.agent(replicas.a)

        @agent.output("big")
        def big() -> str:
            return "y" * 1_200_000

        task = await connected(agent)
        try:
            here = await replicas.a.state.router.invoke(replicas.key, "big", None, 10)
            assert len(str(from_value(here))) == 1_200_000  # on the holder, it is answered
            started = time.monotonic()
            with pytest.raises(errors.PayloadTooLarge) as answer:
                await replicas.router_b.invoke(replicas.key, "big", None, 10)
            with pytest.raises(errors.PayloadTooLarge) as call:
                await replicas.router_b.invoke(replicas.key, "echo", to_value("y" * 1_200_000), 10)
            return answer.value.message, call.value.message, time.monotonic() - started
        finally:
            await stopped(task)

    answer, call, took = replicas.run(scenario)
    assert took < 5
    assert answer.startswith("the answer (")
    assert answer.endswith("(1048576 bytes)")
    assert call.startswith("the call (")
    assert call.endswith("(1048576 bytes)")


def test_the_in_flight_limit_and_the_deadline_hold_across_replicas(replicas: Replicas) -> None:
    async def scenario() -> tuple[errors.Throttled, errors.DeadlineExceeded, float, bool]:
        router = replicas.router_b
        agent = replicas.agent(replicas.a)
        stuck = Stuck(agent)
        task = await connected(agent)
        try:
            calls = [
                asyncio.create_task(router.invoke(replicas.key, "wait", None, 0.5))
                for _ in range(2)
            ]
            await asyncio.wait_for(stuck.started.wait(), GENEROUS_S)
            await asyncio.sleep(0.05)
            with pytest.raises(errors.Throttled) as throttled:
                await router.invoke(replicas.key, "wait", None, 0.5)
            begun = time.monotonic()
            with pytest.raises(errors.DeadlineExceeded) as exceeded:
                await calls[0]
            waited = time.monotonic() - begun
            await asyncio.gather(calls[1], return_exceptions=True)
            await asyncio.wait_for(stuck.cancelled.wait(), GENEROUS_S)
        finally:
            await stopped(task)
        return throttled.value, exceeded.value, waited, stuck.cancelled.is_set()

    throttled, exceeded, waited, cancelled = replicas.run(scenario)
    assert "2 calls in flight" in throttled.message
    assert throttled.retry_after == 1
    assert exceeded.message == "device 'boiler' did not answer in time"
    assert waited < 1.0  # the holder's deadline, not the request's margin
    assert cancelled  # the device was told


def test_a_caller_that_goes_away_cancels_the_call_on_the_other_replica(
    replicas: Replicas,
) -> None:
    async def scenario() -> bool:
        agent = replicas.agent(replicas.a)
        stuck = Stuck(agent)
        task = await connected(agent)
        try:
            caller = asyncio.create_task(
                replicas.router_b.invoke(replicas.key, "wait", None, GENEROUS_S)
            )
            await asyncio.wait_for(stuck.started.wait(), GENEROUS_S)
            caller.cancel()
            await asyncio.wait_for(stuck.cancelled.wait(), 5)
            return stuck.cancelled.is_set()
        finally:
            await stopped(task)

    assert replicas.run(scenario)


def test_a_connection_on_another_replica_replaces_the_first(replicas: Replicas) -> None:
    async def scenario() -> tuple[LinkRefused, object, bool, bool]:
        first = replicas.agent(replicas.a)
        first.output("who")(lambda: "first")
        first_task = await connected(first)
        second = replicas.agent(replicas.b)
        second.output("who")(lambda: "second")
        second_task = await connected(second)
        try:
            with pytest.raises(LinkRefused) as refused:
                await asyncio.wait_for(first_task, GENEROUS_S)
            await eventually(lambda: replicas.a.state.links.get(replicas.key) is None)
            # A, which no longer holds it, reaches the device on B.
            router_a = replicas.a.state.router
            answer = from_value(await router_a.invoke(replicas.key, "who", None, 5))
            await asyncio.sleep(0.5)  # the figures' writes of this moment are done
            row = await replicas.database.run(
                lambda s: s.get(Device, replicas.b.state.links.get(replicas.key).device_pk)  # type: ignore[union-attr]
            )
            return refused.value, answer, row is not None and row.connected, True
        finally:
            await stopped(second_task)

    refused, answer, row_connected, _ = replicas.run(scenario)
    assert refused.code == grpc.StatusCode.FAILED_PRECONDITION
    assert refused.details == REPLACED
    assert answer == "second"
    assert row_connected  # the replaced link's close did not mark the device offline


def test_figures_and_changes_reach_a_watcher_on_the_other_replica(replicas: Replicas) -> None:
    async def scenario() -> tuple[bool, bool, bool]:
        router = replicas.router_b
        key = replicas.key
        assert await router.figures(key) is None
        agent = replicas.agent(replicas.a)
        declare_examples(agent)
        async with router.watching(key):
            change = replicas.b.state.links.next_change(key)
            task = await connected(agent)
            try:
                await asyncio.wait_for(change.wait(), 5)  # the presence announcement
                live = await router.figures(key)
                await asyncio.sleep(0.2)  # the lease reached the holder
                change = replicas.b.state.links.next_change(key)
                await router.invoke(key, "temperature", None, 5)  # bytes move on A
                await asyncio.wait_for(change.wait(), 5)
                moved = await router.figures(key)
            finally:
                await stopped(task)
        for _ in range(100):  # until A has seen the stream end
            if (gone := await router.figures(key)) is None:
                break
            await asyncio.sleep(0.05)
        return (
            live is not None and live.connected,
            moved is not None and live is not None and moved.rx_bytes > live.rx_bytes,
            gone is None,
        )

    assert replicas.run(scenario) == (True, True, True)


def test_without_nats_calls_to_other_replicas_are_unavailable_and_recover(
    replicas: Replicas,
) -> None:
    async def scenario() -> tuple[str, object, object]:
        agent = replicas.agent(replicas.a)
        declare_examples(agent)
        task = await connected(agent)
        try:
            replicas.nats.stop()
            await eventually(lambda: not links(replicas.b).nc_connected)
            with pytest.raises(errors.Unavailable) as down:
                await replicas.router_b.invoke(replicas.key, "temperature", None, 5)
            # The replica holding the link still serves it directly.
            local = from_value(
                await replicas.a.state.router.invoke(replicas.key, "temperature", None, 5)
            )
            replicas.nats.start()
            await eventually(
                lambda: links(replicas.a).nc_connected and links(replicas.b).nc_connected, 20
            )
            deadline = time.monotonic() + 10
            while True:  # the holder's subscription is sent again on reconnecting
                try:
                    back = from_value(
                        await replicas.router_b.invoke(replicas.key, "temperature", None, 5)
                    )
                    break
                except errors.NotFound:
                    if time.monotonic() > deadline:
                        raise
                    await asyncio.sleep(0.1)
        finally:
            await stopped(task)
        return down.value.message, local, back

    message, local, back = replicas.run(scenario)
    assert "NATS" in message
    assert local == back == 21.5


def test_the_start_up_sweep_resets_only_devices_no_replica_holds(replicas: Replicas) -> None:
    """A row left connected by a dead replica is reset; one whose link is live is not."""

    async def scenario() -> tuple[bool, bool, int]:
        agent = replicas.agent(replicas.a)
        task = await connected(agent)
        try:
            await asyncio.sleep(0.5)  # the open is written
            with replicas.database.session() as s:
                devices.create_device(s, replicas.key.user_id, "orphan", "orphan-credentials")
                s.execute(
                    sa.update(Device)
                    .where(Device.device_id == "orphan")
                    .values(connected=True, connected_time=datetime.now(UTC))
                )
            router = replicas.router_b
            reset = await links(replicas.b).sweep_unheld(
                replicas.database, lambda: datetime.now(UTC), router.held_anywhere
            )
            with replicas.database.session() as s:
                rows = dict(s.execute(sa.select(Device.device_id, Device.connected)).all())
        finally:
            await stopped(task)
        return rows[DEVICE], rows["orphan"], reset

    assert replicas.run(scenario) == (True, False, 1)


def test_a_replica_started_while_nats_is_down_serves_and_joins_when_it_comes(
    database: Database, nats_process: NatsProcess
) -> None:
    loop = LoopThread()
    nats_process.stop()

    async def scenario() -> tuple[str, bool]:
        running = await create_server(database, keys=KeyRing.generate(), nats_url=nats_process.url)
        try:
            with pytest.raises(errors.Unavailable) as down:
                await running.state.router.invoke(DeviceKey(1, "any"), "x", None, 1)
            nats_process.start()
            await asyncio.wait_for(links(running).ready.wait(), 20)
            with pytest.raises(errors.NotFound):  # offline now, not "broker away"
                await running.state.router.invoke(DeviceKey(1, "any"), "x", None, 1)
            return down.value.message, links(running).nc_connected
        finally:
            await running.stop(0)

    try:
        message, joined = loop.run(scenario, timeout=60)
    finally:
        loop.close()
    assert message == BROKER_DOWN
    assert joined


def test_the_nats_url_setting() -> None:
    assert Settings.from_env({}).nats_url is None
    both = {"THINGWIRE_NATS_URL": "nats://a:4222, nats://b:4222"}
    assert Settings.from_env(both).nats_url == "nats://a:4222,nats://b:4222"
    for bad in ("", "127.0.0.1:4222", "http://x"):
        with pytest.raises(ConfigError, match="THINGWIRE_NATS_URL"):
            Settings.from_env({"THINGWIRE_NATS_URL": bad})
