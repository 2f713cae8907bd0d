"""The group commit: concurrent batches share one transaction, a failing batch fails alone,
the queue is bounded and `stop` drains it; on SQLite and PostgreSQL.

While another connection holds the records table, the writer's first transaction waits,
and the batches that arrive meanwhile pile up; released, they must all go in one commit.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa

from server.errors import Unavailable
from server.storage.db import Database
from server.storage.models import Device, TelemetryRecord
from server.storage.telemetry import split_batch
from server.telemetry.writer import TelemetryWriter, WriteOutcome
from tests.storage.test_telemetry import car  # noqa: F401 - fixture

BATCHES = 12
#: No device has this primary key: its rows break the foreign key.
MISSING_DEVICE = 987_654


def batch(index: int, size: int = 3) -> list[dict[str, Any]]:
    """``size`` distinct records, distinct from every other index's."""
    return [
        {"@t": "obd.bat", "@ts": f"2024-01-01T00:{index:02d}:{second:02d}Z", "voltage": 12.0}
        for second in range(size)
    ]


@contextlib.contextmanager
def records_locked(database: Database) -> Iterator[Callable[[], None]]:
    """Hold a lock that makes every insert into the records table wait; yields `release`."""
    if database.is_sqlite:
        path = database.url.database
        assert path is not None
        holder: Any = sqlite3.connect(path, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")  # the database's write lock
    else:
        url = database.url.set(drivername="postgresql")
        holder = psycopg.connect(url.render_as_string(hide_password=False))
        holder.execute("LOCK TABLE telemetry_records IN EXCLUSIVE MODE")
    released = False

    def release() -> None:
        nonlocal released
        if not released:
            released = True
            holder.rollback() if not database.is_sqlite else holder.execute("ROLLBACK")

    try:
        yield release
    finally:
        release()
        holder.close()


def count(database: Database) -> int:
    with database.session() as s:
        return int(s.scalar(sa.select(sa.func.count()).select_from(TelemetryRecord)) or 0)


async def until(condition: Callable[[], bool]) -> None:
    """Wait (without blocking the loop) until ``condition()`` holds; 5 s at most."""
    async with asyncio.timeout(5):
        # Polled: the writer thread changes what is watched, and signals no event.
        while not condition():  # noqa: ASYNC110
            await asyncio.sleep(0.01)


async def held(writer: TelemetryWriter, device_pk: int, index: int) -> asyncio.Future[WriteOutcome]:
    """Write batch ``index`` and return once the writer has taken it (and waits on the lock)."""
    task = asyncio.ensure_future(writer.write(device_pk, split_batch(batch(index)), "http"))
    await asyncio.sleep(0)  # the write runs up to its wait: the batch is queued
    await until(lambda: writer.queued == 0)
    return task


def run(coroutine: Callable[[], Awaitable[Any]]) -> Any:
    return asyncio.run(coroutine())  # type: ignore[arg-type]


def test_batches_waiting_together_share_one_commit(database: Database, car: Device) -> None:  # noqa: F811
    async def scenario() -> list[WriteOutcome]:
        writer = TelemetryWriter(database, writers=1)
        try:
            with records_locked(database) as release:
                first = await held(writer, car.id, 0)
                rest = [
                    asyncio.ensure_future(writer.write(car.id, split_batch(batch(i)), "http"))
                    for i in range(1, BATCHES)
                ]
                await until(lambda: writer.queued == BATCHES - 1)
                release()
                outcomes = await asyncio.gather(first, *rest)
            assert writer.batches == BATCHES
            # One commit for the batch taken first, one for all that waited behind it.
            assert writer.commits == 2
            return outcomes
        finally:
            await writer.stop()

    outcomes = run(scenario)
    assert outcomes == [WriteOutcome(3, 0, 0)] * BATCHES
    assert count(database) == 3 * BATCHES


def test_a_failing_batch_fails_alone_and_the_others_are_stored(
    database: Database,
    car: Device,  # noqa: F811
) -> None:
    async def scenario() -> list[WriteOutcome | BaseException]:
        writer = TelemetryWriter(database, writers=1)
        try:
            with records_locked(database) as release:
                first = await held(writer, car.id, 0)
                group = [
                    asyncio.ensure_future(
                        writer.write(
                            MISSING_DEVICE if i == 3 else car.id, split_batch(batch(i)), "http"
                        )
                    )
                    for i in range(1, 6)
                ]
                await until(lambda: writer.queued == 5)
                release()
                return await asyncio.gather(first, *group, return_exceptions=True)
        finally:
            await writer.stop()

    outcomes = run(scenario)
    assert isinstance(outcomes[3], sa.exc.IntegrityError)
    assert [o for i, o in enumerate(outcomes) if i != 3] == [WriteOutcome(3, 0, 0)] * 5
    assert count(database) == 15


def test_a_full_queue_refuses_at_once(database: Database, car: Device) -> None:  # noqa: F811
    async def scenario() -> None:
        writer = TelemetryWriter(database, max_queued=2, writers=1)
        try:
            with records_locked(database) as release:
                taken = await held(writer, car.id, 0)
                waiting = [
                    asyncio.ensure_future(writer.write(car.id, split_batch(batch(i)), "http"))
                    for i in (1, 2)
                ]
                await until(lambda: writer.queued == 2)
                with pytest.raises(Unavailable, match="busy"):
                    await writer.write(car.id, split_batch(batch(3)), "http")
                release()
                await asyncio.gather(taken, *waiting)
        finally:
            await writer.stop()

    run(scenario)
    assert count(database) == 9


def test_stop_drains_the_queue_then_refuses(database: Database, car: Device) -> None:  # noqa: F811
    async def scenario() -> list[WriteOutcome]:
        writer = TelemetryWriter(database)
        with records_locked(database) as release:
            pending = [
                asyncio.ensure_future(writer.write(car.id, split_batch(batch(i)), "http"))
                for i in range(BATCHES)
            ]
            await until(lambda: writer.queued < BATCHES)
            stopping = asyncio.ensure_future(writer.stop())
            await asyncio.sleep(0.05)
            assert not stopping.done()  # it waits for the queued batches
            with pytest.raises(Unavailable, match="stopping"):
                await writer.write(car.id, split_batch(batch(99)), "http")
            release()
            await stopping
        assert all(p.done() for p in pending)
        return [p.result() for p in pending]

    assert run(scenario) == [WriteOutcome(3, 0, 0)] * BATCHES
    assert count(database) == 3 * BATCHES


@pytest.mark.parametrize("database", ["sqlite"], indirect=True)  # a SQLite pragma
def test_the_writer_commits_with_the_chosen_sqlite_durability(
    database: Database,
    car: Device,  # noqa: F811
) -> None:
    async def level(mode: str) -> int:
        writer = TelemetryWriter(database, sqlite_synchronous=mode)
        try:
            await writer.write(car.id, split_batch(batch(len(mode))), "http")
            # The writer is idle between batches: its connection may be read here.
            [connection] = writer.connections
            return int(connection.exec_driver_sql("PRAGMA synchronous").scalar_one())
        finally:
            await writer.stop()

    assert asyncio.run(level("FULL")) == 2
    assert asyncio.run(level("NORMAL")) == 1


@pytest.mark.parametrize("database", ["postgresql"], indirect=True)  # a server ends it
def test_a_connection_the_database_dropped_fails_no_batch(
    database: Database,
    car: Device,  # noqa: F811
) -> None:
    async def scenario() -> list[WriteOutcome]:
        writer = TelemetryWriter(database)
        try:
            first = await writer.write(car.id, split_batch(batch(0)), "http")
            url = database.url.set(drivername="postgresql")
            with psycopg.connect(url.render_as_string(hide_password=False)) as admin:
                admin.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
            second = await writer.write(car.id, split_batch(batch(1)), "http")
            return [first, second]
        finally:
            await writer.stop()

    assert run(scenario) == [WriteOutcome(3, 0, 0)] * 2
    assert count(database) == 6


def test_a_group_is_bounded_by_the_rejects_it_keeps_too(database: Database, car: Device) -> None:  # noqa: F811
    # Batches of bad records only write as many rows as their kept rejects: 30 of them
    # (1,000 each) make groups of at most 20,000 rows, not one transaction of 30,000.
    def bad(index: int) -> list[int]:
        return list(range(index * 1000, (index + 1) * 1000))  # distinct: none is a repeat

    async def scenario() -> None:
        writer = TelemetryWriter(database, writers=1)
        try:
            with records_locked(database) as release:
                first = await held(writer, car.id, 0)
                rest = [
                    asyncio.ensure_future(writer.write(car.id, split_batch(bad(i)), "http"))
                    for i in range(30)
                ]
                await until(lambda: writer.queued == 30)
                release()
                outcomes = await asyncio.gather(first, *rest)
            assert outcomes[1:] == [WriteOutcome(0, 0, 1000)] * 30
            # The first batch alone, then 20 and 10 of the others.
            assert (writer.batches, writer.commits) == (31, 3)
        finally:
            await writer.stop()

    run(scenario)


@pytest.mark.parametrize("database", ["postgresql"], indirect=True)  # several writers
def test_postgres_writers_commit_groups_side_by_side(database: Database, car: Device) -> None:  # noqa: F811
    # Each writer waits on the lock in its own transaction: three batches are taken by
    # three writers (none waits in the queue), and all are stored once released.
    async def scenario() -> list[WriteOutcome]:
        writer = TelemetryWriter(database, writers=3)
        try:
            with records_locked(database) as release:
                taken = [await held(writer, car.id, i) for i in range(3)]
                await until(lambda: len(writer.connections) == 3)
                release()
                return await asyncio.gather(*taken)
        finally:
            await writer.stop()

    assert run(scenario) == [WriteOutcome(3, 0, 0)] * 3
    assert count(database) == 9


@pytest.mark.parametrize("database", ["postgresql"], indirect=True)  # several writers
def test_postgres_writers_store_each_record_once_whatever_the_race(
    database: Database,
    car: Device,  # noqa: F811
) -> None:
    # Every batch is sent four times at once (a device retrying while its first copies are
    # still being stored): the writers race on the same keys, and each record is stored
    # once, counted new once and a repeat three times.
    async def scenario() -> list[WriteOutcome]:
        writer = TelemetryWriter(database, writers=3)
        try:
            writes = [
                writer.write(car.id, split_batch(batch(i, size=20)), "http")
                for i in range(BATCHES)
                for _copy in range(4)
            ]
            return await asyncio.gather(*writes)
        finally:
            await writer.stop()

    outcomes = run(scenario)
    assert sum(o.new for o in outcomes) == 20 * BATCHES
    assert sum(o.repeats for o in outcomes) == 3 * 20 * BATCHES
    assert count(database) == 20 * BATCHES


def test_sqlite_has_one_writer(tmp_path: Any) -> None:
    database = Database(f"sqlite:///{tmp_path}/one.db")
    try:
        with pytest.raises(ValueError, match="1 on SQLite"):
            TelemetryWriter(database, writers=2)
    finally:
        database.dispose()
