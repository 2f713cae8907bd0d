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

Only statements that read a small number of rows by an index belong here, and no more than
`MAX_LOOP_ROWS` are read on the loop: a read that finds more (a user with a thousand
devices, each with a long description: several milliseconds) is made again in a worker.
"""

from __future__ import annotations

import logging
import sqlite3
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import sqlite

from server.storage.db import Database

log = logging.getLogger(__name__)

#: A SELECT of any columns.
Statement = sa.Select[*tuple[Any, ...]]
_DIALECT = sqlite.dialect(paramstyle="qmark")
#: Statements compiled for the driver that are remembered (they are module constants).
MAX_STATEMENTS = 64
#: The most rows a read takes on the loop's thread (about 8 µs each at worst); a read that
#: has more goes to a worker thread.
MAX_LOOP_ROWS = 32


@dataclass(frozen=True)
class _Compiled:
    """A statement as the sqlite3 driver takes it: its text, its parameters in order, and
    the values of those it binds itself."""

    sql: str
    names: tuple[str, ...]
    defaults: dict[str, Any]


def _is_file(database: Database) -> bool:
    name = database.url.database or ""
    return database.is_sqlite and name not in ("", ":memory:") and not name.startswith("file:")


class LoopReads:
    """Runs a read on the loop's thread when the database allows it, else in a worker.

    On the loop the statement goes to the sqlite3 driver directly, compiled once, so it
    must be one whose columns need no conversion by SQLAlchemy (integers, text).
    """

    def __init__(self, database: Database) -> None:
        self._database = database
        self._connection: sqlite3.Connection | None = None
        self._compiled: dict[Statement, _Compiled] = {}
        if _is_file(database):
            # Used only from the loop's thread (hence no thread check); autocommit, so each
            # statement reads the newest committed state, and never waits for a lock.
            self._connection = sqlite3.connect(
                database.url.database or "",
                timeout=0,
                isolation_level=None,
                check_same_thread=False,
            )
            self._connection.execute("PRAGMA query_only=ON")
            self._connection.execute("PRAGMA busy_timeout=0")
            weakref.finalize(self, self._connection.close)

    async def rows(
        self, statement: Statement, params: Mapping[str, Any]
    ) -> Sequence[Sequence[Any]]:
        """All rows of `statement` with `params`: here when the database is an SQLite file,
        not locked, and they are few (`MAX_LOOP_ROWS`), else in a worker thread, in a unit
        of work of its own."""
        if self._connection is not None:
            compiled = self._compile(statement)
            values = {**compiled.defaults, **params}
            try:
                cursor = self._connection.execute(
                    compiled.sql, [values[name] for name in compiled.names]
                )
                try:
                    rows = cursor.fetchmany(MAX_LOOP_ROWS + 1)
                finally:
                    cursor.close()
                if len(rows) <= MAX_LOOP_ROWS:
                    return rows
            except sqlite3.OperationalError as error:
                log.debug("loop read deferred to a worker thread: %s", error)
        return await self._database.run(lambda s: s.execute(statement, params).all())

    def _compile(self, statement: Statement) -> _Compiled:
        compiled = self._compiled.get(statement)
        if compiled is None:
            done = statement.compile(dialect=_DIALECT)
            if len(self._compiled) >= MAX_STATEMENTS:
                self._compiled.clear()  # callers pass statements made once; stay bounded
            compiled = _Compiled(done.string, tuple(done.positiontup or ()), dict(done.params))
            self._compiled[statement] = compiled
        return compiled

    def close(self) -> None:
        """Close the loop's connection (it is closed when this object goes, too)."""
        if self._connection is not None:
            self._connection.close()


__all__ = ["LoopReads"]
