"""Link statistics: what a link counts, and how the devices table is kept true, in-process."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import grpc
import pytest
import sqlalchemy as sa
from google.protobuf import struct_pb2
from thingwire.agent.v1 import agent_pb2, agent_pb2_grpc

from server.app import create_server
from server.link.link import DeviceKey, Link, LinkLimits
from server.link.stats_store import StatsStore
from server.security.keys import KeyRing
from server.storage import devices, users
from server.storage.db import Database
from server.storage.models import Device
from tests.link.conftest import CREDENTIALS, DEVICE, USER, LinkWorld, connected, stopped

#: Figures of live links are written this often in these tests.
INTERVAL_S = 0.3


@pytest.fixture
def fast(make_world: Callable[[LinkLimits], LinkWorld]) -> LinkWorld:
    return make_world(LinkLimits(go_away_window_s=0.1, stats_interval_s=INTERVAL_S))


def stored(database: Database, device_id: str = DEVICE) -> Device:
    with database.session() as s:
        device = s.scalar(sa.select(Device).where(Device.device_id == device_id))
        assert device is not None
        s.expunge(device)
        return device


async def eventually(check: Callable[[], bool], within: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("the condition did not come true in time")
        await asyncio.sleep(0.05)


def all_written(world: LinkWorld) -> bool:
    """Nothing waits to be written (right after a link opened or closed, something does)."""
    return world.running.state.link_stats.waiting == 0


def test_a_link_counts_the_bytes_of_every_message_each_way(fast: LinkWorld) -> None:
    hello = agent_pb2.ConnectRequest(
        hello=agent_pb2.Hello(
            user=USER,
            device=DEVICE,
            credentials=CREDENTIALS,
            resources=[
                agent_pb2.ResourceDeclaration(
                    name="echo", kind=agent_pb2.RESOURCE_KIND_INPUT_OUTPUT
                )
            ],
        )
    )

    async def scenario() -> tuple[Link, int, int, int]:
        outbox: asyncio.Queue[agent_pb2.ConnectRequest] = asyncio.Queue()
        outbox.put_nowait(hello)

        async def requests() -> Any:
            while True:
                yield await outbox.get()

        async with grpc.aio.insecure_channel(fast.target) as channel:
            stream = agent_pb2_grpc.AgentServiceStub(channel).Connect(requests())
            welcome = await stream.read()
            link = fast.running.state.links.get(fast.key)
            assert link is not None
            invoking = asyncio.create_task(
                fast.running.state.router.invoke(
                    fast.key, "echo", struct_pb2.Value(string_value="hi"), 5
                )
            )
            invoke = await stream.read()
            assert isinstance(invoke, agent_pb2.ConnectResponse)
            result = agent_pb2.ConnectRequest(
                result=agent_pb2.Result(call_id=invoke.invoke.call_id, output=invoke.invoke.input)
            )
            outbox.put_nowait(result)
            await invoking
            stream.cancel()
            assert isinstance(welcome, agent_pb2.ConnectResponse)
            return link, welcome.ByteSize(), invoke.ByteSize(), result.ByteSize()

    link, welcome_size, invoke_size, result_size = fast.run(scenario)
    assert link.rx_bytes == hello.ByteSize() + result_size
    assert link.tx_bytes == welcome_size + invoke_size
    assert link.ip_address == "127.0.0.1"  # a direct client: the TCP peer


def test_opening_and_closing_a_link_is_written_with_its_figures(fast: LinkWorld) -> None:
    async def scenario() -> tuple[Device, Device, Link]:
        task = await connected(fast.agent())
        link = fast.running.state.links.get(fast.key)
        assert link is not None
        await eventually(lambda: stored(fast.database).connected)
        open_row = stored(fast.database)
        await stopped(task)
        await eventually(lambda: not stored(fast.database).connected)
        return open_row, stored(fast.database), link

    open_row, closed_row, link = fast.run(scenario)
    assert open_row.connected_time == link.connected_time
    assert open_row.ip_address == "127.0.0.1"
    assert open_row.rx_bytes > 0
    assert open_row.tx_bytes > 0
    # Closing: the time of the change, the final counts of that link.
    assert closed_row.connected_time is not None
    assert open_row.connected_time is not None
    assert closed_row.connected_time >= open_row.connected_time
    assert (closed_row.rx_bytes, closed_row.tx_bytes) == (link.rx_bytes, link.tx_bytes)
    assert closed_row.ip_address == "127.0.0.1"


def test_the_counts_of_a_live_link_are_written_periodically(fast: LinkWorld) -> None:
    async def scenario() -> tuple[int, int]:
        agent = fast.agent()

        @agent.io("echo")
        def echo(value: object) -> object:
            return value

        task = await connected(agent)
        await eventually(lambda: stored(fast.database).connected)
        before = stored(fast.database).rx_bytes
        await fast.running.state.router.invoke(
            fast.key, "echo", struct_pb2.Value(string_value="x" * 1000), 5
        )
        await eventually(lambda: stored(fast.database).rx_bytes >= before + 1000)
        link = fast.running.state.links.get(fast.key)
        assert link is not None
        assert link.closed is None
        row = stored(fast.database)
        await stopped(task)
        return row.rx_bytes, link.rx_bytes

    written, counted = fast.run(scenario)
    assert written == counted


def test_counts_are_those_of_the_latest_link(fast: LinkWorld) -> None:
    """Thinger's figures are "from its latest connection": a new link starts from zero."""

    async def scenario() -> tuple[int, int]:
        agent = fast.agent()

        @agent.io("echo")
        def echo(value: object) -> object:
            return value

        task = await connected(agent)
        await fast.running.state.router.invoke(
            fast.key, "echo", struct_pb2.Value(string_value="x" * 5000), 5
        )
        await stopped(task)
        await eventually(lambda: all_written(fast))
        first = stored(fast.database).rx_bytes
        task = await connected(agent)
        await eventually(lambda: all_written(fast))
        second = stored(fast.database).rx_bytes
        await stopped(task)
        return first, second

    first, second = fast.run(scenario)
    assert first > 5000
    assert 0 < second < 1000


def test_figures_survive_a_server_restart(fast: LinkWorld) -> None:
    async def scenario() -> tuple[Link, Device]:
        agent = fast.agent()
        task = await connected(agent)
        link = fast.running.state.links.get(fast.key)
        assert link is not None
        await stopped(task)
        await fast.restart()  # a graceful stop writes what was waiting
        return link, stored(fast.database)

    link, row = fast.run(scenario)
    assert not row.connected
    assert (row.rx_bytes, row.tx_bytes, row.ip_address) == (
        link.rx_bytes,
        link.tx_bytes,
        "127.0.0.1",
    )


def test_a_graceful_stop_writes_the_links_it_ends(fast: LinkWorld) -> None:
    async def stop_only() -> Device:
        task = await connected(fast.agent())
        await eventually(lambda: stored(fast.database).connected)
        await fast.running.stop(0.5)
        row = stored(fast.database)
        await stopped(task)
        fast.running = await create_server(
            fast.database, keys=KeyRing.generate(), link_limits=fast.limits
        )
        return row

    row = fast.run(stop_only)
    assert not row.connected
    assert row.rx_bytes > 0


def test_a_device_left_connected_by_a_dead_process_is_reset_at_start(
    fast: LinkWorld,
) -> None:
    stale = datetime(2020, 1, 1, tzinfo=UTC)
    with fast.database.session() as s:
        s.execute(
            sa.update(Device)
            .where(Device.device_id == "other")
            .values(connected=True, connected_time=stale, rx_bytes=7, tx_bytes=9)
        )
    fast.run(fast.restart)
    row = stored(fast.database, "other")
    assert not row.connected
    assert row.connected_time is not None
    assert row.connected_time > stale
    assert (row.rx_bytes, row.tx_bytes) == (7, 9)  # the figures of its last link stay


def test_many_changes_of_many_links_are_one_statement(database: Database) -> None:
    """10,000 chatty links must not mean 10,000 writes a second: a round writes each device
    once, in one executemany."""
    with database.session() as s:
        user = users.create_user(s, "b@example.com", "a-long-password", username="bea")
        pks = [devices.create_device(s, user.id, f"d{i}", "c")[0].id for i in range(50)]
    statements: list[tuple[str, bool]] = []

    def count(
        _conn: Any, _cursor: Any, statement: str, _params: Any, _ctx: Any, many: bool
    ) -> None:
        if statement.lstrip().upper().startswith("UPDATE"):
            statements.append((statement, many))

    async def scenario() -> int:
        store = StatsStore(database, 3600, lambda: datetime.now(UTC))
        links = [
            Link(DeviceKey(user.id, f"d{i}"), {}, 1, device_pk=pk, ip_address="10.0.0.1")
            for i, pk in enumerate(pks)
        ]
        for link in links:
            store.attached(link)
        for _ in range(100):
            for link in links:
                link.rx_bytes += 3
                store.changed(link)
        waiting = store.waiting
        sa.event.listen(database.engine, "before_cursor_execute", count)
        try:
            await store.flush()
        finally:
            sa.event.remove(database.engine, "before_cursor_execute", count)
        return waiting

    waiting = asyncio.run(scenario())
    assert waiting == 50
    assert len(statements) == 1
    assert statements[0][1]
    row = stored(database, "d7")
    assert (row.connected, row.rx_bytes, row.ip_address) == (True, 300, "10.0.0.1")


def test_a_failed_write_is_kept_for_the_next_round(database: Database) -> None:
    with database.session() as s:
        user = users.create_user(s, "c@example.com", "a-long-password", username="cid")
        pk = devices.create_device(s, user.id, "d", "c")[0].id

    async def scenario() -> int:
        store = StatsStore(database, 3600, lambda: datetime.now(UTC))
        link = Link(DeviceKey(user.id, "d"), {}, 1, device_pk=pk)
        link.tx_bytes = 42
        store.attached(link)
        real = database.run

        async def broken(work: Any) -> Any:
            raise sa.exc.OperationalError("UPDATE", {}, Exception("database away"))

        database.run = broken  # type: ignore[method-assign,assignment]
        try:
            await store.flush()
        finally:
            database.run = real  # type: ignore[method-assign]
        waiting = store.waiting
        await store.flush()
        return waiting

    assert asyncio.run(scenario()) == 1
    assert stored(database, "d").tx_bytes == 42


def test_written_waits_for_a_closed_links_figures_and_no_longer(database: Database) -> None:
    """What a delete waits for: the row says disconnected once `written` returns."""
    with database.session() as s:
        user = users.create_user(s, "w@example.com", "a-long-password", username="wes")
        pk = devices.create_device(s, user.id, "d", "c")[0].id

    async def scenario() -> tuple[bool, bool, float]:
        store = StatsStore(database, 3600, lambda: datetime.now(UTC))
        store.start()
        try:
            link = Link(DeviceKey(user.id, "d"), {}, 1, device_pk=pk)
            store.attached(link)
            await store.written(pk)  # nothing closed: at once
            await eventually(lambda: stored(database, "d").connected)
            store.detached(link)
            before = stored(database, "d").connected
            began = asyncio.get_running_loop().time()
            await store.written(pk)
            took = asyncio.get_running_loop().time() - began
            return before, stored(database, "d").connected, took
        finally:
            await store.stop()

    before, after, took = asyncio.run(scenario())
    assert before is True  # the row lagged behind the link
    assert after is False
    assert took < 2.0


def test_written_gives_up_while_the_database_is_away(database: Database) -> None:
    with database.session() as s:
        user = users.create_user(s, "x@example.com", "a-long-password", username="xia")
        pk = devices.create_device(s, user.id, "d", "c")[0].id

    async def scenario() -> None:
        store = StatsStore(database, 3600, lambda: datetime.now(UTC))
        link = Link(DeviceKey(user.id, "d"), {}, 1, device_pk=pk)
        store.detached(link)

        async def broken(work: Any) -> Any:
            raise sa.exc.OperationalError("UPDATE", {}, Exception("database away"))

        real = database.run
        database.run = broken  # type: ignore[method-assign,assignment]
        store.start()
        try:
            with pytest.raises(TimeoutError):
                await store.written(pk, timeout_s=0.5)
        finally:
            database.run = real  # type: ignore[method-assign]
            await store.stop()

    asyncio.run(scenario())
