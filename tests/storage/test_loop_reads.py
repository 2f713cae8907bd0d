"""The user's profile in one statement, and reads on the loop's thread that never wait."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from server.errors import NotFound
from server.storage import devices, users
from server.storage.db import Database
from server.storage.loop_reads import MAX_LOOP_ROWS, LoopReads

PASSWORD = "s3cret-Passw0rd"


def profile_now(reads: LoopReads, user_id: int) -> users.Profile:
    rows = asyncio.run(reads.rows(users.PROFILE, {"user_id": user_id}))
    return users.profile_of(rows, user_id)


def test_the_orm_free_read_and_the_sessions_agree(database: Database) -> None:
    with database.session() as s:
        ada = users.create_user(s, "ada@example.com", PASSWORD, "ada")
        devices.create_device(s, ada.id, "car", "credentials", description="red")
    with database.session() as s:
        assert users.read_profile(s, ada.id) == profile_now(LoopReads(database), ada.id)


def test_a_profile_lists_the_users_devices_in_device_id_order(database: Database) -> None:
    with database.session() as s:
        ada = users.create_user(s, "ada@example.com", PASSWORD, "ada")
        bob = users.create_user(s, "bob@example.com", PASSWORD, "bob")
        for name in ("zeta", "alpha", "mid"):
            devices.create_device(s, ada.id, name, "credentials", description=f"{name}!")
        devices.create_device(s, bob.id, "bobs", "credentials")
    profile = profile_now(LoopReads(database), ada.id)
    assert (profile.id, profile.username, profile.email, profile.timezone) == (
        ada.id,
        "ada",
        "ada@example.com",
        "UTC",
    )
    assert [d.device_id for d in profile.devices] == ["alpha", "mid", "zeta"]
    assert [d.description for d in profile.devices] == ["alpha!", "mid!", "zeta!"]
    assert all(d.unit_id for d in profile.devices)


def test_a_user_without_devices_has_an_empty_profile_list(database: Database) -> None:
    with database.session() as s:
        ada = users.create_user(s, "ada@example.com", PASSWORD, "ada")
    assert profile_now(LoopReads(database), ada.id).devices == ()


def test_an_unknown_user_is_not_found(database: Database) -> None:
    with pytest.raises(NotFound):
        profile_now(LoopReads(database), 12345)


def test_a_read_sees_what_was_committed_just_before(database: Database) -> None:
    with database.session() as s:
        ada = users.create_user(s, "ada@example.com", PASSWORD, "ada")
    reads = LoopReads(database)
    assert profile_now(reads, ada.id).devices == ()
    with database.session() as s:
        devices.create_device(s, ada.id, "car", "credentials")
    assert [d.device_id for d in profile_now(reads, ada.id).devices] == ["car"]


def worker_runs(database: Database, monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """The units of work `database` runs in a worker thread from now on."""
    runs: list[object] = []
    real = database.run

    async def counting(fn: Any) -> Any:
        runs.append(fn)
        return await real(fn)

    monkeypatch.setattr(database, "run", counting)
    return runs


def where_it_ran(database: Database) -> str:
    """Where a read ran: "loop" or "worker" (its connection's thread check tells)."""
    reads = LoopReads(database)
    asyncio.run(reads.rows(sa.select(sa.literal(1)), {}))
    return "loop" if reads._connection is not None else "worker"


def test_an_sqlite_file_is_read_on_the_loops_thread_postgresql_in_a_worker(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    reads = LoopReads(database)
    workers = worker_runs(database, monkeypatch)
    assert asyncio.run(reads.rows(sa.select(sa.literal(7)), {})) == [(7,)]
    assert len(workers) == (0 if database.is_sqlite else 1)


@pytest.fixture
def sqlite_file(tmp_path: Path) -> Iterator[Database]:
    """A migrated SQLite file: the only kind read on the loop's thread."""
    db = Database(f"sqlite:///{tmp_path / 'loop.db'}")
    db.migrate()
    try:
        yield db
    finally:
        db.dispose()


def test_sqlite_in_memory_is_read_in_a_worker() -> None:
    db = Database("sqlite:///:memory:")
    try:
        assert where_it_ran(db) == "worker"
    finally:
        db.dispose()


def test_the_loops_connection_cannot_write(sqlite_file: Database) -> None:
    reads = LoopReads(sqlite_file)
    assert reads._connection is not None
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        reads._connection.execute("DELETE FROM users")


def test_a_locked_database_sends_the_read_to_a_worker_instead_of_waiting(
    sqlite_file: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    database = sqlite_file
    with database.session() as s:
        ada = users.create_user(s, "ada@example.com", PASSWORD, "ada")
    reads = LoopReads(database)
    workers = worker_runs(database, monkeypatch)

    # An exclusive lock (not WAL's usual writer lock) locks readers out: the loop's
    # connection gives up at once, the worker's waits for the lock to go.
    holder = database.engine.raw_connection()
    try:
        holder.execute("PRAGMA locking_mode=EXCLUSIVE")
        holder.execute("BEGIN EXCLUSIVE")
        holder.execute("UPDATE users SET timezone = 'Europe/Oslo'")
        holder.commit()  # the file stays exclusively locked by this connection

        async def both() -> users.Profile:
            pending = asyncio.ensure_future(reads.rows(users.PROFILE, {"user_id": ada.id}))
            await asyncio.sleep(0.2)
            assert len(workers) == 1  # tried on the loop, gave up at once, went to a worker
            assert not pending.done()  # which waits for the lock, as storage always does
            holder.execute("PRAGMA locking_mode=NORMAL")
            holder.execute("SELECT 1 FROM users").fetchall()  # releases the lock
            return users.profile_of(await pending, ada.id)

        profile = asyncio.run(both())
    finally:
        holder.close()
    assert profile.timezone == "Europe/Oslo"


def test_a_read_of_many_rows_goes_to_a_worker(
    sqlite_file: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A user may have a thousand devices (THINGWIRE_MAX_DEVICES_PER_USER): read on the
    # loop, with long descriptions, that stalled every link and call for milliseconds.
    database = sqlite_file
    with database.session() as s:
        ada = users.create_user(s, "ada@example.com", PASSWORD, "ada")
        for i in range(MAX_LOOP_ROWS + 1):
            devices.create_device(s, ada.id, f"car{i:04d}", "credentials")
    reads = LoopReads(database)
    workers = worker_runs(database, monkeypatch)
    profile = users.profile_of(asyncio.run(reads.rows(users.PROFILE, {"user_id": ada.id})), ada.id)
    assert len(profile.devices) == MAX_LOOP_ROWS + 1
    assert len(workers) == 1
    with database.session() as s:
        devices.delete_device(s, ada.id, "car0000")
    assert len(profile_now(reads, ada.id).devices) == MAX_LOOP_ROWS
    assert len(workers) == 1  # as many rows as the loop may read: read there
