"""Telemetry uploads over the link, against the real server and database (both kinds):
what is acknowledged is in the database, a batch sent twice is stored once, a bad batch is
answered (never left to be retried forever), a storage failure is answered UploadFailed and
retried, the limits hold, and uploads never hold up resource calls."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import grpc
import orjson
import pytest
import sqlalchemy as sa
from thingwire.agent.v1 import agent_pb2, agent_pb2_grpc

from device_agent.agent import Agent
from device_agent.backoff import Backoff
from device_agent.outbox import Outbox
from device_agent.outbox_store import OutboxStore
from device_agent.uploader import Uploader
from server.link.link import LinkLimits
from server.storage import devices
from server.storage.db import Database
from tests.link.conftest import CREDENTIALS, DEVICE, FAST, USER, LinkWorld, connected, stopped

Failure = agent_pb2.UploadFailure
GENEROUS_S = 30.0
#: Retries quickly in tests; the delays themselves are the backoff's (test_backoff.py).
QUICK = Backoff(base_s=0.05, cap_s=0.2)


def record(n: int, kind: str = "obd.bat") -> dict[str, object]:
    return {
        "@t": kind,
        "@ts": f"2026-03-01T00:{n // 60000 % 60:02d}:{n // 1000 % 60:02d}.{n % 1000:03d}Z",
        "n": n,
    }


def records_bytes(*numbers: int) -> bytes:
    return orjson.dumps([record(n) for n in numbers])


def device_pk(world: LinkWorld) -> int:
    return int(world.database.call(lambda s: devices.get_device(s, world.key.user_id, DEVICE).id))


def stored_numbers(world: LinkWorld) -> list[int]:
    """The `n` of every record stored for the device, in key order."""
    pk = device_pk(world)
    with world.database.session() as s:
        rows = s.execute(
            sa.text("SELECT fields FROM telemetry_records WHERE device_pk = :pk ORDER BY ts"),
            {"pk": pk},
        ).all()
    return sorted((json.loads(f) if isinstance(f, str) else f)["n"] for (f,) in rows)


def rejects(world: LinkWorld) -> list[tuple[str, str]]:
    pk = device_pk(world)
    with world.database.session() as s:
        rows = s.execute(
            sa.text("SELECT source, reason FROM telemetry_rejects WHERE device_pk = :pk"),
            {"pk": pk},
        ).all()
    return [(source, reason) for source, reason in rows]


class RawLink:
    """A device link driven message by message, as a misbehaving or test device would."""

    def __init__(self, call: grpc.aio.StreamStreamCall, welcome: agent_pb2.Welcome) -> None:
        self.call = call
        self.welcome = welcome

    async def upload(self, batch_id: str, records: bytes) -> None:
        upload = agent_pb2.Upload(batch_id=batch_id, records=records)
        await self.call.write(agent_pb2.ConnectRequest(upload=upload))

    async def answer(self) -> agent_pb2.ConnectResponse:
        message = await asyncio.wait_for(self.call.read(), GENEROUS_S)
        assert isinstance(message, agent_pb2.ConnectResponse), message
        return message

    async def answers(self, count: int) -> dict[str, agent_pb2.ConnectResponse]:
        """The next `count` upload answers, by batch id."""
        found = {}
        for _ in range(count):
            message = await self.answer()
            kind = message.WhichOneof("kind")
            answer = getattr(message, kind)
            found[answer.batch_id] = message
        return found


@contextlib.asynccontextmanager
async def raw_link(world: LinkWorld) -> AsyncIterator[RawLink]:
    async with grpc.aio.insecure_channel(world.target) as channel:
        call = agent_pb2_grpc.AgentServiceStub(channel).Connect()
        hello = agent_pb2.Hello(user=USER, device=DEVICE, credentials=CREDENTIALS)
        await call.write(agent_pb2.ConnectRequest(hello=hello))
        first = await call.read()
        assert isinstance(first, agent_pb2.ConnectResponse)
        assert first.HasField("welcome")
        try:
            yield RawLink(call, first.welcome)
        finally:
            call.cancel()


def outbox_agent(world: LinkWorld, path: Path, **uploader: object) -> Agent:
    outbox = Outbox.open(path, flush_interval_s=0.01)
    target = world.target
    return Agent(
        lambda: grpc.aio.insecure_channel(target),
        user=USER,
        device=DEVICE,
        credentials=CREDENTIALS,
        backoff=FAST,
        outbox=outbox,
        uploader=Uploader(outbox, linger_s=0.01, backoff=QUICK, **uploader),  # type: ignore[arg-type]
    )


async def drained(agent: Agent) -> None:
    """Until the agent's outbox holds nothing: every record was acknowledged."""
    assert agent.outbox is not None
    # Records appended but not yet on disk are in neither count below (a commit may be
    # running in the outbox's thread): wait for them first.
    await agent.outbox.flush()
    deadline = time.monotonic() + GENEROUS_S
    while agent.outbox.unbatched or await agent.outbox.batch_count():
        if time.monotonic() > deadline:
            raise AssertionError("the outbox did not drain")
        await asyncio.sleep(0.02)


@contextlib.contextmanager
def renamed(database: Database, table: str) -> Iterator[None]:
    """The table is gone (a real storage failure on both databases) until the block ends."""
    with database.session() as s:
        s.execute(sa.text(f"ALTER TABLE {table} RENAME TO {table}_away"))
    try:
        yield
    finally:
        with database.session() as s:
            s.execute(sa.text(f"ALTER TABLE {table}_away RENAME TO {table}"))


# -- the protocol, message by message -----------------------------------------------------


def test_the_welcome_tells_the_upload_limits(make_world: Callable[[LinkLimits], LinkWorld]) -> None:
    world = make_world(
        LinkLimits(max_upload_bytes=5000, max_upload_records=7, max_uploads_in_flight=3)
    )

    async def scenario() -> agent_pb2.Welcome:
        async with raw_link(world) as link:
            return link.welcome

    welcome = world.run(scenario)
    assert (
        welcome.max_upload_bytes,
        welcome.max_upload_records,
        welcome.max_uploads_in_flight,
    ) == (
        5000,
        7,
        3,
    )


def test_an_acknowledged_batch_is_in_the_database(world: LinkWorld) -> None:
    async def scenario() -> agent_pb2.UploadAck:
        async with raw_link(world) as link:
            await link.upload("b1", records_bytes(1, 2, 3))
            return (await link.answer()).upload_ack

    ack = world.run(scenario)
    assert ack == agent_pb2.UploadAck(batch_id="b1", stored=3, repeats=0, rejected=0)
    assert stored_numbers(world) == [1, 2, 3]


def test_a_batch_sent_again_is_stored_once(world: LinkWorld) -> None:
    async def scenario() -> tuple[agent_pb2.UploadAck, agent_pb2.UploadAck, agent_pb2.UploadAck]:
        async with raw_link(world) as link:
            await link.upload("again", records_bytes(1, 2))
            first = (await link.answer()).upload_ack
        async with raw_link(world) as link:  # a new link, as after a reconnect
            await link.upload("again", records_bytes(1, 2))
            second = (await link.answer()).upload_ack
            # Another id with records stored before: stored once per record as well.
            await link.upload("other", records_bytes(2, 3))
            third = (await link.answer()).upload_ack
        return first, second, third

    first, second, third = world.run(scenario)
    assert (first.stored, first.repeated_batch) == (2, False)
    assert (second.stored, second.repeats, second.repeated_batch) == (0, 2, True)
    assert (third.stored, third.repeats, third.repeated_batch) == (1, 1, False)
    assert stored_numbers(world) == [1, 2, 3]


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b'[{"@t": ', "the batch is not JSON"),
        (b"\xff\xfe not utf-8", "the batch is not JSON"),
        (
            b'{"@t": "obd.bat", "@ts": "2026-01-01T00:00:00Z"}',
            "the batch is a JSON dict, not an array",
        ),
        (b"", "the batch is not JSON"),
    ],
)
def test_a_batch_that_is_not_a_json_array_is_set_aside_whole_and_acknowledged(
    world: LinkWorld, raw: bytes, reason: str
) -> None:
    async def scenario() -> agent_pb2.UploadAck:
        async with raw_link(world) as link:
            await link.upload("bad", raw)
            return (await link.answer()).upload_ack

    ack = world.run(scenario)
    assert (ack.stored, ack.rejected) == (0, 1)  # acknowledged: the device moves on
    assert [(s, r[: len(reason)]) for s, r in rejects(world)] == [("link", reason)]
    assert stored_numbers(world) == []


def test_unusable_records_are_set_aside_and_the_others_stored(world: LinkWorld) -> None:
    batch = orjson.dumps(
        [
            record(1),
            {"@t": "obd.bat"},
            "not an object",
            {**record(2), "@ts": "yesterday"},
            record(3),
        ]
    )

    async def scenario() -> agent_pb2.UploadAck:
        async with raw_link(world) as link:
            await link.upload("mixed", batch)
            return (await link.answer()).upload_ack

    ack = world.run(scenario)
    assert (ack.stored, ack.rejected) == (2, 3)
    assert stored_numbers(world) == [1, 3]
    assert sorted(r for _, r in rejects(world))[0].startswith("bad @ts")


def test_a_value_orjson_refuses_sets_aside_only_its_record(world: LinkWorld) -> None:
    # 1e400 is JSON (RFC 8259) beyond a double: its record is set aside, not the batch.
    odd = orjson.dumps(record(2)).replace(b'"n":2', b'"n":1e400')
    batch = b"[" + orjson.dumps(record(1)) + b"," + odd + b"," + orjson.dumps(record(3)) + b"]"

    async def scenario() -> agent_pb2.UploadAck:
        async with raw_link(world) as link:
            await link.upload("odd", batch)
            return (await link.answer()).upload_ack

    ack = world.run(scenario)
    assert (ack.stored, ack.rejected) == (2, 1)
    assert stored_numbers(world) == [1, 3]
    assert [r for _, r in rejects(world)] == ["fields are not representable as JSON"]


@pytest.mark.parametrize("batch_id", ["", "x" * 65, "tab\there"])
def test_an_upload_without_a_usable_batch_id_ends_the_stream(
    world: LinkWorld, batch_id: str
) -> None:
    async def scenario() -> grpc.aio.AioRpcError:
        async with raw_link(world) as link:
            await link.upload(batch_id, records_bytes(1))
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await link.answer()
            return info.value

    error = world.run(scenario)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "batch id" in (error.details() or "")
    assert stored_numbers(world) == []


def test_a_batch_over_the_limits_is_refused_too_large(
    make_world: Callable[[LinkLimits], LinkWorld],
) -> None:
    world = make_world(LinkLimits(max_upload_bytes=2000, max_upload_records=5))

    async def scenario() -> dict[str, agent_pb2.ConnectResponse]:
        async with raw_link(world) as link:
            await link.upload("many", records_bytes(*range(6)))
            await link.upload("big", orjson.dumps([{**record(9), "pad": "x" * 2000}]))
            await link.upload("fits", records_bytes(*range(5)))
            return await link.answers(3)

    answers = world.run(scenario)
    assert answers["many"].upload_failed.failure == Failure.UPLOAD_FAILURE_TOO_LARGE
    assert answers["many"].upload_failed.reason == "the batch has 6 records, more than 5"
    assert answers["big"].upload_failed.failure == Failure.UPLOAD_FAILURE_TOO_LARGE
    assert "more than 2000" in answers["big"].upload_failed.reason
    assert answers["fits"].upload_ack.stored == 5
    assert stored_numbers(world) == [0, 1, 2, 3, 4]


def test_uploads_past_the_in_flight_limit_are_refused_busy(
    make_world: Callable[[LinkLimits], LinkWorld],
) -> None:
    world = make_world(LinkLimits(max_uploads_in_flight=1))

    async def scenario() -> dict[str, agent_pb2.ConnectResponse]:
        async with raw_link(world) as link:
            async with holding_write_lock(world.database):  # b0 waits for the database
                for n in range(4):
                    await link.upload(f"b{n}", records_bytes(n))
                refused = await link.answers(3)  # at once, while b0 is being stored
            return {**refused, **(await link.answers(1))}

    answers = world.run(scenario)
    assert answers["b0"].upload_ack.stored == 1
    for batch in ("b1", "b2", "b3"):
        failed = answers[batch].upload_failed
        assert failed.failure == Failure.UPLOAD_FAILURE_BUSY
        assert failed.retry_after_ms == 200
        assert failed.reason == "the limit of uploads stored at once on a link (1) is reached"
    assert stored_numbers(world) == [0]


def test_a_storage_failure_is_answered_upload_failed(world: LinkWorld) -> None:
    async def scenario() -> agent_pb2.ConnectResponse:
        async with raw_link(world) as link:
            with renamed(world.database, "telemetry_records"):
                await link.upload("lost", records_bytes(1))
                return await link.answer()

    failed = world.run(scenario).upload_failed
    assert failed.batch_id == "lost"
    assert failed.failure == Failure.UPLOAD_FAILURE_STORAGE
    assert failed.retry_after_ms >= 1000
    assert failed.reason == "the server could not store the batch"
    assert stored_numbers(world) == []


# -- the agent and its outbox ---------------------------------------------------------------


def test_the_agent_uploads_its_outbox_and_deletes_what_was_acknowledged(
    world: LinkWorld, tmp_path: Path
) -> None:
    async def scenario() -> tuple[int, int]:
        agent = outbox_agent(world, tmp_path / "outbox.db", batch_records=100)
        assert agent.outbox is not None
        assert agent.uploader is not None
        agent.outbox.append([record(n) for n in range(1000)])
        task = await connected(agent)
        agent.outbox.append([record(n) for n in range(1000, 1500)])  # while the link is up
        await drained(agent)
        await stopped(task)
        await agent.outbox.close()
        return agent.uploader.acked, agent.uploader.stored

    acked, stored = world.run(scenario)
    assert stored == 1500
    assert acked >= 15
    assert stored_numbers(world) == list(range(1500))


def test_the_agent_retries_after_a_storage_failure_until_stored(
    world: LinkWorld, tmp_path: Path
) -> None:
    async def scenario() -> None:
        agent = outbox_agent(world, tmp_path / "outbox.db")
        assert agent.outbox is not None
        with renamed(world.database, "telemetry_batches"):
            task = await connected(agent)
            agent.outbox.append([record(n) for n in range(50)])
            await asyncio.sleep(1.0)  # failed at least once, the backoff waits
            assert await agent.outbox.batch_count() >= 1  # kept, not lost
        await drained(agent)
        await stopped(task)
        await agent.outbox.close()

    world.run(scenario)
    assert stored_numbers(world) == list(range(50))


def test_a_batch_formed_under_larger_limits_is_split_and_stored(
    make_world: Callable[[LinkLimits], LinkWorld], tmp_path: Path
) -> None:
    """An operator lowered the limits after the device formed its batches: they are split,
    not retried forever."""
    world = make_world(LinkLimits(max_upload_records=10))
    store = OutboxStore(tmp_path / "outbox.db", 1 << 30)
    store.append([orjson.dumps(record(n)) for n in range(95)])
    assert store.next_batch((), 1000, 1 << 30, form=True) is not None
    store.close()

    async def scenario() -> None:
        agent = outbox_agent(world, tmp_path / "outbox.db")
        task = await connected(agent)
        await drained(agent)
        await stopped(task)
        assert agent.outbox is not None
        await agent.outbox.close()

    world.run(scenario)
    assert stored_numbers(world) == list(range(95))


def test_uploads_being_stored_do_not_hold_up_resource_calls(
    world: LinkWorld, tmp_path: Path
) -> None:
    """The database is locked: the batch waits for it, the call on the same link does not."""

    async def scenario() -> tuple[float, int]:
        agent = outbox_agent(world, tmp_path / "outbox.db")

        @agent.output("temperature")
        def temperature() -> float:
            return 21.5

        task = await connected(agent)
        async with holding_write_lock(world.database):
            assert agent.outbox is not None
            agent.outbox.append([record(n) for n in range(100)])
            await asyncio.sleep(0.3)  # the upload is in, its write waits for the lock
            assert await agent.outbox.batch_count() == 1
            begun = time.monotonic()
            value = await world.running.state.router.invoke(world.key, "temperature", None, 5.0)
            took = time.monotonic() - begun
            assert value is not None
            assert value.number_value == 21.5
            unanswered = await agent.outbox.batch_count()
        await drained(agent)
        await stopped(task)
        await agent.outbox.close()
        return took, unanswered

    took, unanswered = world.run(scenario)
    assert unanswered == 1  # the call was answered while the batch was still being stored
    assert took < 1.0
    assert stored_numbers(world) == list(range(100))


@contextlib.asynccontextmanager
async def holding_write_lock(database: Database) -> AsyncIterator[None]:
    """Another connection holds the write lock of the telemetry tables (for < 5 s, SQLite's
    busy timeout, so the server's write waits rather than fails)."""
    if database.is_sqlite:
        assert database.url.database is not None
        raw = sqlite3.connect(database.url.database, isolation_level=None)
        raw.execute("BEGIN IMMEDIATE")
        try:
            yield
        finally:
            raw.execute("ROLLBACK")
            raw.close()
        return
    connection = database.engine.connect()
    transaction = connection.begin()
    connection.execute(sa.text("LOCK TABLE telemetry_batches IN EXCLUSIVE MODE"))
    try:
        yield
    finally:
        transaction.rollback()
        connection.close()


def test_a_stopping_server_stores_the_batches_it_received_first(world: LinkWorld) -> None:
    """Their answers cannot reach the device any more, but what came is stored before the
    server (and its writer) stop: the device's resend will be a repeat."""

    async def scenario() -> bool:
        async with raw_link(world) as link:
            async with holding_write_lock(world.database):
                await link.upload("last", records_bytes(1, 2))
                await asyncio.sleep(0.3)  # the write waits for the lock
                stopping = asyncio.create_task(world.running.stop(5))
                await asyncio.sleep(0.5)
                waited = not stopping.done()
            await stopping
        return waited

    assert world.run(scenario) is True
    assert stored_numbers(world) == [1, 2]


def test_records_dropped_by_the_disk_bound_are_reported_to_the_cloud(
    world: LinkWorld, tmp_path: Path
) -> None:
    """While the link is down the outbox fills past its bound: the oldest go, and the cloud
    receives an `event.outbox.dropped` record with the count."""
    store = OutboxStore(tmp_path / "outbox.db", max_bytes=20_000)
    for n in range(0, 1000, 100):  # appends of 100 records, as group commits would be
        store.append([orjson.dumps(record(i)) for i in range(n, n + 100)])
    dropped = store.dropped_total
    store.close()
    assert 0 < dropped < 1000

    async def scenario() -> None:
        agent = outbox_agent(world, tmp_path / "outbox.db")
        task = await connected(agent)
        await drained(agent)
        await stopped(task)
        assert agent.outbox is not None
        await agent.outbox.close()

    world.run(scenario)
    with world.database.session() as s:
        reports = s.execute(
            sa.text("SELECT fields FROM telemetry_records WHERE record_type = :t"),
            {"t": "event.outbox.dropped"},
        ).all()
    counts = [(json.loads(f) if isinstance(f, str) else f) for (f,) in reports]
    assert sum(c["count"] for c in counts) == dropped
    assert max(c["total"] for c in counts) == dropped
    kept = stored_numbers_of(world, "obd.bat")
    assert kept == list(range(dropped, 1000))  # the oldest were dropped, the rest stored


def stored_numbers_of(world: LinkWorld, record_type: str) -> list[int]:
    with world.database.session() as s:
        rows = s.execute(
            sa.text("SELECT fields FROM telemetry_records WHERE record_type = :t"),
            {"t": record_type},
        ).all()
    return sorted((json.loads(f) if isinstance(f, str) else f)["n"] for (f,) in rows)
