"""Short reads answered on the event loop's thread, where SQLite makes that cheap.

Storage normally runs in a worker thread (`Database.run`), which keeps the event loop free
while a statement waits. For one indexed statement over a few rows of an SQLite file that
is the wrong trade: the statement takes tens of microseconds, the hop to a worker thread
and back several hundred (futures, the loop's wake-up, the GIL changing hands), on every
call (docs/benchmarks.md, "Authenticated call, per face and credential"). So a few hot
reads — `GET /auth/user/` — run here, on one connection of their own that never waits:
it is read-only, and its busy timeout is zero, so a locked database (SQLite's WAL readers
are almost never locked out) sends the read to the worker thread as before instead of
stalling the loop. PostgreSQL, and SQLite in memory, always take the worker thread.

Only statements that read a bounded, small number of rows by an index belong here.
"""

from __future__ import annotations

import logging
import sqlite3
import weakref
from collections.abc import Callable
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.pool import StaticPool

from server.storage.db import Database

log = logging.getLogger(__name__)

T = TypeVar("T")


def _read_only(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA query_only=ON")
        cursor.execute("PRAGMA busy_timeout=0")
    finally:
        cursor.close()


def _is_file(database: Database) -> bool:
    name = database.url.database or ""
    return database.is_sqlite and name not in ("", ":memory:") and not name.startswith("file:")


class LoopReads:
    """Runs a read on the loop's thread when the database allows it, else in a worker."""

    def __init__(self, database: Database) -> None:
        self._database = database
        self._engine: sa.Engine | None = None
        if _is_file(database):
            # One connection, used only from the loop's thread (hence no thread check).
            self._engine = sa.create_engine(
                database.url,
                poolclass=StaticPool,
                connect_args={"timeout": 0, "check_same_thread": False},
            )
            event.listen(self._engine, "connect", _read_only)
            weakref.finalize(self, self._engine.dispose)

    async def read(self, fn: Callable[[sa.Connection], T]) -> T:
        """`fn` over a connection: here when the database is an SQLite file and not locked,
        else in a worker thread, in a unit of work of its own."""
        if self._engine is not None:
            try:
                with self._engine.connect() as connection:
                    return fn(connection)
            except sa.exc.OperationalError as error:
                if not isinstance(error.orig, sqlite3.OperationalError):
                    raise
                log.debug("loop read deferred to a worker thread: %s", error.orig)
        return await self._database.run(lambda s: fn(s.connection()))

    def close(self) -> None:
        """Close the loop's connection (it is closed when this object goes, too)."""
        if self._engine is not None:
            self._engine.dispose()


__all__ = ["LoopReads"]
