"""The outbox's file: telemetry records kept on the device until the cloud stored them.

One SQLite database, `<THINGWIRE_AGENT_STATE_DIR>/outbox.db`, in WAL mode with
``synchronous=FULL``: a commit is on disk when it returns, so records and batches survive
an agent restart and a power cut. Three tables:

- ``records``: records not yet in a batch, each one JSON object (bytes), oldest first;
- ``batches``: batches formed for upload, each with the id it was formed with and its
  records as the JSON array that is sent, byte for byte, however often it is sent again;
- ``counters``: the records dropped so far to bound the disk (``dropped``, kept across
  restarts) and those not yet reported to the cloud (``unreported``).

`OutboxStore` is synchronous and used by one thread at a time (`device_agent/outbox.py`
runs it in a single worker thread, off the event loop). docs/device-link.md, "The outbox",
describes the policy.
"""

from __future__ import annotations

import json
import logging
import secrets
import sqlite3
from collections.abc import Collection, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from device_agent.records import dropped_record

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS records (id INTEGER PRIMARY KEY, body BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS batches (
    id INTEGER PRIMARY KEY,
    batch_id TEXT NOT NULL UNIQUE,
    records BLOB NOT NULL,
    count INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""
DROPPED = "dropped"
UNREPORTED = "unreported"
#: Dropping stops once the outbox is back under this share of its bound, so that a full
#: outbox drops in chunks rather than a few records on every append.
DROP_TO = 0.9


@dataclass(frozen=True)
class Batch:
    """A batch formed for upload: its id and its records as one JSON array."""

    batch_id: str
    records: bytes
    count: int


@dataclass(frozen=True)
class Dropped:
    """What one bounding round dropped: records and bytes, and the total dropped so far."""

    records: int
    bytes: int
    total: int


def new_batch_id() -> str:
    """A random id (128 bits): unique per device without any state to keep."""
    return secrets.token_hex(16)


def join(bodies: Sequence[bytes]) -> bytes:
    """Records (each a JSON object) as one JSON array."""
    return b"[" + b",".join(bodies) + b"]"


class OutboxStore:
    """The outbox database; every method is one transaction."""

    def __init__(self, path: Path, max_bytes: int) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: transactions are begun and committed explicitly below.
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        # FULL: the WAL is synced at every commit, so a committed record survives power loss.
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(SCHEMA)
        self.max_bytes = max_bytes
        self.bytes = self.unbatched = 0
        self._recount()

    def _recount(self) -> None:
        """Kept in memory, counted here once (and after a failed transaction): every write
        goes through this object."""
        self.bytes = self._one("SELECT coalesce(sum(length(body)), 0) FROM records") + self._one(
            "SELECT coalesce(sum(length(records)), 0) FROM batches"
        )
        self.unbatched = self._one("SELECT count(*) FROM records")

    def _one(self, sql: str, *args: object) -> int:
        row = self._db.execute(sql, args).fetchone()
        return int(row[0]) if row and row[0] is not None else 0

    @property
    def dropped_total(self) -> int:
        return self._one("SELECT value FROM counters WHERE name = ?", DROPPED)

    def batch_count(self) -> int:
        return self._one("SELECT count(*) FROM batches")

    @property
    def unreported(self) -> int:
        """Records dropped since the last `event.outbox.dropped` record was formed."""
        return self._one("SELECT value FROM counters WHERE name = ?", UNREPORTED)

    def _count_dropped(self, records: int) -> None:
        self._db.executemany(
            "INSERT INTO counters (name, value) VALUES (?, ?)"
            " ON CONFLICT (name) DO UPDATE SET value = value + excluded.value",
            ((DROPPED, records), (UNREPORTED, records)),
        )

    def append(self, bodies: Sequence[bytes], sending: Collection[str] = ()) -> Dropped | None:
        """Store ``bodies`` (JSON objects) in one transaction, one sync for all of them.

        Past ``max_bytes`` the oldest records are dropped (batches not being sent first,
        then records) and counted; the next batch formed tells the cloud, with an
        ``event.outbox.dropped`` record (docs/device-link.md, "The outbox").
        """
        if not bodies:
            return None
        with self._transaction():
            self._db.executemany("INSERT INTO records (body) VALUES (?)", ((b,) for b in bodies))
            self.bytes += sum(len(b) for b in bodies)
            self.unbatched += len(bodies)
            if self.bytes <= self.max_bytes:
                return None
            return self._drop_oldest(sending)

    def _drop_oldest(self, sending: Collection[str]) -> Dropped:
        target = int(self.max_bytes * DROP_TO)
        records = freed = 0
        batches = self._db.execute(
            "SELECT id, batch_id, length(records), count FROM batches ORDER BY id"
        ).fetchall()
        for row_id, batch_id, size, count in batches:
            if self.bytes - freed <= target:
                break
            if batch_id in sending:  # its answer may come yet: not counted as lost
                continue
            self._db.execute("DELETE FROM batches WHERE id = ?", (row_id,))
            records += count
            freed += size
        if self.bytes - freed > target:
            last = None
            cursor = self._db.execute("SELECT id, length(body) FROM records ORDER BY id")
            for row_id, size in cursor:
                if self.bytes - freed <= target:
                    break
                last = row_id
                records += 1
                freed += size
                self.unbatched -= 1
            cursor.close()
            if last is not None:
                self._db.execute("DELETE FROM records WHERE id <= ?", (last,))
        self.bytes -= freed
        self._count_dropped(records)
        return Dropped(records, freed, self.dropped_total)

    def next_batch(
        self, exclude: Collection[str], max_records: int, max_bytes: int, form: bool
    ) -> Batch | None:
        """The oldest stored batch not in ``exclude``; else, with ``form``, a new batch of
        the oldest records (at most ``max_records`` and ``max_bytes``), stored with its id
        before it is returned. None when there is nothing to send."""
        # Ids first: the records of the batches skipped (in flight) are not read.
        for row_id, batch_id in self._db.execute("SELECT id, batch_id FROM batches ORDER BY id"):
            if batch_id not in exclude:
                records, count = self._db.execute(
                    "SELECT records, count FROM batches WHERE id = ?", (row_id,)
                ).fetchone()
                return Batch(batch_id, bytes(records), count)
        if not form or not self.unbatched:
            return None
        # Drops not yet told go first, in the batch itself: a report formed only when it
        # is sent is never dropped in its turn, and one report covers every round of an
        # outage. `total` lets the cloud see drops whose report was lost all the same.
        unreported = self.unreported
        report = dropped_record(unreported, self.dropped_total) if unreported else None
        rows = self._db.execute(
            "SELECT id, body FROM records ORDER BY id LIMIT ?",
            (max(1, max_records - 1) if report else max_records,),
        ).fetchall()
        bodies: list[bytes] = [report] if report else []
        size = 2 + (len(report) + 1 if report else 0)  # the brackets, the report
        last = None
        for row_id, body in rows:
            if last is not None and size + len(body) + 1 > max_bytes:
                break
            bodies.append(bytes(body))
            size += len(body) + 1
            last = row_id
        if last is None:
            return None
        batch = Batch(new_batch_id(), join(bodies), len(bodies))
        taken = bodies[1:] if report else bodies
        with self._transaction():
            self._db.execute(
                "INSERT INTO batches (batch_id, records, count) VALUES (?, ?, ?)",
                (batch.batch_id, batch.records, batch.count),
            )
            self._db.execute("DELETE FROM records WHERE id <= ?", (last,))
            if report:
                self._db.execute(
                    "UPDATE counters SET value = value - ? WHERE name = ?", (unreported, UNREPORTED)
                )
        self.bytes += len(batch.records) - sum(len(b) for b in taken)
        self.unbatched -= len(taken)
        return batch

    def delete(self, batch_id: str) -> bool:
        """Forget a batch the cloud stored; False if it was gone already."""
        with self._transaction():
            row = self._db.execute(
                "DELETE FROM batches WHERE batch_id = ? RETURNING length(records)", (batch_id,)
            ).fetchone()
        if row is None:
            return False
        self.bytes -= int(row[0])
        return True

    def split(self, batch_id: str, max_records: int, max_bytes: int) -> list[Batch]:
        """Replace a batch the cloud found too large by smaller ones (new ids: the cloud
        stored nothing of it). A single record too large for any batch is dropped and
        counted, so that it never holds the outbox up."""
        row = self._db.execute(
            "SELECT records FROM batches WHERE batch_id = ?", (batch_id,)
        ).fetchone()
        if row is None:
            return []
        items = json.loads(row[0])
        bodies = [json.dumps(item, separators=(",", ":")).encode() for item in items]
        pieces = list(_pieces(bodies, max(1, max_records), max_bytes))
        with self._transaction():
            self._db.execute("DELETE FROM batches WHERE batch_id = ?", (batch_id,))
            self.bytes -= len(row[0])
            batches = []
            for piece in pieces:
                if len(piece) == 1 and len(piece[0]) + 2 > max_bytes:
                    log.warning("a record of %d bytes fits no batch: dropped", len(piece[0]))
                    self._count_dropped(1)
                    continue
                batch = Batch(new_batch_id(), join(piece), len(piece))
                self._db.execute(
                    "INSERT INTO batches (batch_id, records, count) VALUES (?, ?, ?)",
                    (batch.batch_id, batch.records, batch.count),
                )
                self.bytes += len(batch.records)
                batches.append(batch)
        return batches

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        """BEGIN IMMEDIATE … COMMIT; on failure (a full disk, say) ROLLBACK and count
        again, so the figures in memory stay those of the file."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
            self._db.execute("COMMIT")
        except BaseException:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            self._recount()
            raise


def _pieces(bodies: Iterable[bytes], max_records: int, max_bytes: int) -> Iterable[list[bytes]]:
    """Consecutive groups of at most ``max_records`` records and ``max_bytes`` as an array."""
    piece: list[bytes] = []
    size = 2
    for body in bodies:
        if piece and (len(piece) >= max_records or size + len(body) + 1 > max_bytes):
            yield piece
            piece, size = [], 2
        piece.append(body)
        size += len(body) + 1
    if piece:
        yield piece
