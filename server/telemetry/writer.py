"""The one way telemetry reaches the database: ``TelemetryWriter.write``, a group commit.

Both faces of ingest (the HTTP push and the device link) hand a split batch to the writer
and answer the device only once ``write`` returned, which means the batch's records, its
rejects and its batch id are committed (docs/telemetry-ingest.md, "Group commit").

A writer thread owns one database connection. It takes every batch waiting at that
moment and stores them all in one transaction, so concurrent requests share one commit
(on SQLite one WAL fsync) instead of paying one each; each caller is answered once the
transaction that holds its rows has committed. SQLite has one writer (it has one write
lock); PostgreSQL has ``POSTGRES_WRITERS``, each with its own connection, because there
the insert's work is done by the database's own process per connection, and one
connection at a time leaves the other cores idle while the queue grows. If a transaction
fails, its group is stored again batch by batch, each in its own transaction on a fresh
connection, so that one bad batch fails alone and a dropped connection fails none. The
queue is bounded: when it is full a write is refused at once with Unavailable (503 over
REST, which devices retry) rather than piling up memory.

On SQLite the writer's connection commits with ``PRAGMA synchronous=FULL`` by default: a
2xx then means the batch is on disk even across a power cut. PostgreSQL keeps the server's
``synchronous_commit`` (on by default: the commit waits for the WAL flush).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections import deque
from collections.abc import Sequence
from typing import NamedTuple

from sqlalchemy.engine import Connection

from server.clock import Clock, utc_now
from server.config import DEFAULT_TELEMETRY_QUEUE_BATCHES, SQLITE_SYNCHRONOUS_MODES
from server.errors import Unavailable
from server.storage import telemetry
from server.storage.db import Database
from server.storage.telemetry import Split

__all__ = ["TelemetryWriter", "WriteOutcome"]

log = logging.getLogger(__name__)

#: A group stops growing past this many rows, records and rejects kept (it always takes at
#: least one batch), so one transaction, and the wait of the first batch in it, stays
#: bounded.
MAX_GROUP_RECORDS = 20_000
#: Writer threads (each its own connection and transaction) on PostgreSQL. Two groups
#: committing at once stay exactly-once: the key's uniqueness makes the second insert of a
#: record wait for the first and then do nothing; a deadlock between two groups fails both,
#: and each batch is then stored alone (``TelemetryWriter._commit``).
POSTGRES_WRITERS = 3
QUEUE_FULL = "telemetry storage is busy; retry later"
STOPPING = "the server is stopping; retry later"
NOT_STORED = "the batch could not be stored; retry later"


class WriteOutcome(NamedTuple):
    """What one ``write`` did.

    ``new`` records were stored, ``repeats`` were stored before (or twice in the batch),
    ``rejected`` were set aside. ``batch_repeat`` is True when the batch id was stored
    before, in which case nothing was written again.
    """

    new: int
    repeats: int
    rejected: int
    batch_repeat: bool = False


class _Pending(NamedTuple):
    """One batch waiting for the writer, and where to send its answer."""

    device_pk: int
    split: Split
    source: str
    batch_id: str | None
    received_ts: int
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[WriteOutcome]


def _settle(
    answers: list[tuple[asyncio.Future[WriteOutcome], WriteOutcome | BaseException]],
) -> None:
    """On the callers' loop: answer each, unless it went away meanwhile."""
    for future, result in answers:
        if future.done():
            continue
        if isinstance(result, BaseException):
            future.set_exception(result)
        else:
            future.set_result(result)


def _rows(item: _Pending) -> int:
    """The rows a batch writes: its usable records and the rejects kept of it (a batch of
    bad records only is no lighter a transaction)."""
    kept = min(len(item.split.rejected), telemetry.MAX_REJECTS_KEPT_PER_BATCH)
    return len(item.split.usable) + kept


def _store(connection: Connection, item: _Pending) -> WriteOutcome:
    """Write one batch inside the group's transaction."""
    split = item.split
    if item.batch_id is not None and not telemetry.claim_batch(
        connection, item.device_pk, item.batch_id, item.received_ts
    ):
        return WriteOutcome(0, len(split.usable), len(split.rejected), batch_repeat=True)
    counts = telemetry.store_records(connection, item.device_pk, split.usable)
    telemetry.store_rejects(
        connection, item.device_pk, item.source, split.rejected, item.received_ts
    )
    return WriteOutcome(counts.new, counts.repeats, len(split.rejected))


class TelemetryWriter:
    """Stores batches of device records durably; shared by every ingest face."""

    def __init__(
        self,
        database: Database,
        clock: Clock = utc_now,
        *,
        max_queued: int = DEFAULT_TELEMETRY_QUEUE_BATCHES,
        sqlite_synchronous: str = "FULL",
        writers: int | None = None,
    ) -> None:
        if max_queued < 1:
            raise ValueError("max_queued must be at least 1")
        if writers is None:
            writers = 1 if database.is_sqlite else POSTGRES_WRITERS
        if writers < 1 or (database.is_sqlite and writers != 1):
            raise ValueError("writers must be at least 1, and 1 on SQLite")
        if sqlite_synchronous not in SQLITE_SYNCHRONOUS_MODES:
            raise ValueError(f"sqlite_synchronous must be one of {SQLITE_SYNCHRONOUS_MODES}")
        self._database = database
        self._clock = clock
        self._max_queued = max_queued
        self._synchronous = sqlite_synchronous
        self._ready = threading.Condition()
        self._queue: deque[_Pending] = deque()
        self._writers = writers
        self._threads: list[threading.Thread] = []
        self._stopping = False
        #: Each writer thread's own connection, by thread id, kept between groups.
        self._connections: dict[int, Connection] = {}
        #: Transactions committed so far, and batches stored in them: their ratio is the
        #: group size (read by tests and benchmarks; written by the writer threads, under the lock).
        self.commits = 0
        self.batches = 0

    @property
    def queued(self) -> int:
        """Batches waiting for the writer (not counting the group being stored)."""
        return len(self._queue)

    async def write(
        self, device_pk: int, split: Split, source: str, batch_id: str | None = None
    ) -> WriteOutcome:
        """Store ``split`` for the device; returns once it is committed.

        ``source`` ("http" or "link") is kept with the rejects. ``batch_id`` (the link's)
        makes the whole batch idempotent: a batch id stored before writes nothing.
        Raises Unavailable when the queue is full or the writer is stopping, and what the
        database raised when this batch could not be stored on its own; either way the
        caller answers 5xx and the device retries.
        """
        received_ts = int(self._clock().timestamp() * 1_000_000)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[WriteOutcome] = loop.create_future()
        item = _Pending(device_pk, split, source, batch_id, received_ts, loop, future)
        with self._ready:
            if self._stopping:
                raise Unavailable(STOPPING)
            if len(self._queue) >= self._max_queued:
                raise Unavailable(QUEUE_FULL)
            self._queue.append(item)
            while len(self._threads) < self._writers:
                thread = threading.Thread(target=self._run, name="telemetry-writer", daemon=True)
                self._threads.append(thread)
                thread.start()
            self._ready.notify()
        return await future

    async def stop(self) -> None:
        """Refuse new batches, store every batch already queued, then end the threads."""
        with self._ready:
            self._stopping = True
            self._ready.notify_all()
            threads = list(self._threads)
        for thread in threads:
            await asyncio.to_thread(thread.join)

    # The writer threads.

    def _run(self) -> None:
        try:
            while True:
                with self._ready:
                    while not self._queue and not self._stopping:
                        self._ready.wait()
                    if not self._queue:
                        self._threads.remove(threading.current_thread())
                        if not self._threads:
                            log.info(
                                "telemetry writer stopped: %d batches stored in %d commits",
                                self.batches,
                                self.commits,
                            )
                        return
                    group = self._take()
                    if self._queue:  # more than a group waits: another writer may start
                        self._ready.notify()
                self._commit(group)
        except BaseException:
            # Only a bug gets here (_commit answers every database error). Fail what waits
            # rather than leave it hanging, and let the next write start a new thread.
            log.exception("the telemetry writer stopped unexpectedly")
            with self._ready:
                waiting = list(self._queue)
                self._queue.clear()
                self._threads.remove(threading.current_thread())
            for item in waiting:
                self._answer(item, Unavailable(NOT_STORED))
            raise
        finally:
            self._close()

    def _take(self) -> list[_Pending]:
        """Every batch waiting now, up to MAX_GROUP_RECORDS rows (at least one batch)."""
        group = [self._queue.popleft()]
        records = _rows(group[0])
        while self._queue:
            size = _rows(self._queue[0])
            if records + size > MAX_GROUP_RECORDS:
                break
            group.append(self._queue.popleft())
            records += size
        return group

    def _commit(self, group: Sequence[_Pending], *, retry: bool = True) -> None:
        """Store the group in one transaction; if that fails, each batch once more alone.

        The retry runs on a fresh connection, so a batch is not failed for a connection the
        database dropped meanwhile (a PostgreSQL restart, an idle timeout); a batch that
        fails again alone is answered with its error.
        """
        try:
            outcomes = self._transaction(group)
        except Exception as error:
            if not retry:
                log.warning("storing a telemetry batch failed: %r", error)
                self._answer(group[0], error)
                return
            log.warning("a group of %d batches failed (%r); storing each alone", len(group), error)
            for item in group:
                self._commit([item], retry=False)
            return
        self._answer_all(list(zip(group, outcomes, strict=True)))

    def _transaction(self, group: Sequence[_Pending]) -> list[WriteOutcome]:
        """One transaction on the writer's connection; a failed one drops the connection,
        so the next starts clean (a database that restarted, a broken socket)."""
        connection = self.connection or self._connect()
        try:
            # The Core connection's own transaction: an ORM session per group costs more
            # than a one-record batch's insert (about 40 µs a group), and holds no objects.
            with connection.begin():
                outcomes = [_store(connection, item) for item in group]
        except Exception:
            self._close()
            raise
        with self._ready:
            self.commits += 1
            self.batches += len(group)
        return outcomes

    @property
    def connection(self) -> Connection | None:
        """The calling writer thread's connection, if it has one open."""
        return self._connections.get(threading.get_ident())

    @property
    def connections(self) -> list[Connection]:
        """Every writer thread's open connection (read by tests while the writer idles)."""
        return list(self._connections.values())

    def _connect(self) -> Connection:
        """The writer's own connection, taken out of the pool for good (its pragmas are not
        for other connections)."""
        connection = self._database.engine.connect()
        try:
            if self._database.is_sqlite:
                connection.detach()
                connection.exec_driver_sql(f"PRAGMA synchronous={self._synchronous}")
                connection.commit()
        except Exception:
            connection.close()
            raise
        self._connections[threading.get_ident()] = connection
        return connection

    def _close(self) -> None:
        connection = self.connection
        if connection is not None:
            with contextlib.suppress(Exception):
                connection.close()
            del self._connections[threading.get_ident()]

    @classmethod
    def _answer(cls, item: _Pending, result: WriteOutcome | BaseException) -> None:
        cls._answer_all([(item, result)])

    @staticmethod
    def _answer_all(answers: Sequence[tuple[_Pending, WriteOutcome | BaseException]]) -> None:
        """Answer a group's callers with one wake-up of each callers' loop, not one each."""
        by_loop: dict[
            asyncio.AbstractEventLoop,
            list[tuple[asyncio.Future[WriteOutcome], WriteOutcome | BaseException]],
        ] = {}
        for item, result in answers:
            by_loop.setdefault(item.loop, []).append((item.future, result))
        for loop, settled in by_loop.items():
            # The loop may have closed (a caller that gave up with its loop): the rows are
            # committed or not regardless, and nobody is left to tell.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_settle, settled)
