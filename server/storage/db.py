"""Engine, sessions and migrations for SQLite (embedded default) and PostgreSQL (at scale).

The same SQLAlchemy code runs on both. Every database call from the grpc.aio server goes
through ``Database.run``, which executes a synchronous unit of work in a worker thread so the
event loop never blocks on I/O or on argon2.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.orm import Session, sessionmaker

__all__ = ["Database", "normalize_url"]

log = logging.getLogger(__name__)

T = TypeVar("T")

# Serialises concurrent `migrate()` calls of several replicas on PostgreSQL.
_MIGRATION_LOCK_ID = 0x7468_696E_6777  # "thingw"

_SQLITE_PRAGMAS = (
    "PRAGMA journal_mode=WAL",  # readers do not block the writer
    "PRAGMA foreign_keys=ON",  # cascades and FK checks are off by default in SQLite
    "PRAGMA busy_timeout=5000",  # wait for the write lock instead of failing at once
    "PRAGMA synchronous=NORMAL",  # durable enough with WAL, much faster than FULL
)


def normalize_url(url: str | URL) -> URL:
    """Parse ``url``; plain ``postgresql://``/``postgres://`` become psycopg 3 URLs."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def _create_private(path: Path) -> None:
    """Create the SQLite file (and its directory) readable by its owner only, if absent.

    SQLite gives the ``-wal`` and ``-shm`` files it makes later the mode of the database
    file, so the whole database is private: it holds password hashes and token rows.
    """
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))


def _set_sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        for pragma in _SQLITE_PRAGMAS:
            cursor.execute(pragma)
    finally:
        cursor.close()


class Database:
    """One engine plus a session factory; share one instance per process."""

    def __init__(self, url: str | URL) -> None:
        self.url = normalize_url(url)
        kwargs: dict[str, Any] = {}
        if self.is_sqlite:
            database = self.url.database
            if database and database != ":memory:" and not database.startswith("file:"):
                _create_private(Path(database).expanduser())
        else:
            kwargs["pool_pre_ping"] = True  # survive PostgreSQL restarts and idle timeouts
        self.engine: Engine = sa.create_engine(self.url, **kwargs)
        if self.is_sqlite:
            event.listen(self.engine, "connect", _set_sqlite_pragmas)
        # expire_on_commit=False: objects leave the worker thread and are read after commit.
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    @property
    def is_sqlite(self) -> bool:
        """True for the embedded SQLite backend."""
        return self.url.get_backend_name() == "sqlite"

    def __repr__(self) -> str:
        return f"Database({self.url.render_as_string(hide_password=True)!r})"

    def migrate(self) -> None:
        """Upgrade the schema to the newest revision; a no-op when it is already there.

        Safe to call from several replicas at once on PostgreSQL (advisory lock).
        """
        from alembic import command

        from server.migrations import alembic_config

        with self.engine.begin() as connection:
            if not self.is_sqlite:
                connection.execute(
                    sa.text("SELECT pg_advisory_xact_lock(:id)"), {"id": _MIGRATION_LOCK_ID}
                )
            config = alembic_config(self.url)
            config.attributes["connection"] = connection
            command.upgrade(config, "head")

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A unit of work: commits when the block succeeds, rolls back when it raises."""
        with self._sessions() as session:
            try:
                yield session
                session.commit()
            except BaseException:
                session.rollback()
                raise

    def call(self, fn: Callable[[Session], T]) -> T:
        """Run ``fn`` in its own unit of work, synchronously (CLI, tests)."""
        with self.session() as session:
            return fn(session)

    async def run(self, fn: Callable[[Session], T]) -> T:
        """Run ``fn`` in its own unit of work in a worker thread, off the event loop."""
        return await asyncio.to_thread(self.call, fn)

    def dispose(self) -> None:
        """Close every pooled connection (at shutdown, and in tests before dropping a DB)."""
        self.engine.dispose()
