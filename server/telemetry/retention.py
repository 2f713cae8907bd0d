"""Telemetry retention: remove what is older than THINGWIRE_TELEMETRY_RETENTION_DAYS.

Run by the server's maintenance task. Old data goes in bounded batches (``batch_rows`` per
statement, each in its own short unit of work, with a pause after each batch that removed
rows), so that ingest keeps its turn at the database's write lock while a backlog of
months is cleared: never one giant delete (docs/telemetry-reads.md, "Retention").
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial

from sqlalchemy.orm import Session

from server.storage import retention
from server.storage.db import Database
from server.storage.telemetry import epoch_us

__all__ = ["DEFAULT_BATCH_ROWS", "Removed", "Retention"]

#: Rows one statement deletes at most.
DEFAULT_BATCH_ROWS = 5_000
#: The pause after a statement that removed rows, for other writers.
DEFAULT_PAUSE_S = 0.05
#: Devices (or inputs) listed per unit of work while looking for expired series.
_PAGE = 500


@dataclass
class Removed:
    """What one retention pass removed, and in how many delete statements."""

    records: int = 0
    rejects: int = 0
    batch_ids: int = 0
    input_data: int = 0
    statements: int = 0


@dataclass(frozen=True)
class Retention:
    """Keep telemetry for ``days`` (0: forever) and remove the rest in bounded batches."""

    days: float
    batch_rows: int = DEFAULT_BATCH_ROWS
    pause_s: float = DEFAULT_PAUSE_S

    @property
    def enabled(self) -> bool:
        return self.days > 0

    def cutoff_us(self, now: datetime) -> int:
        """Epoch µs before which telemetry is removed."""
        return epoch_us(now - timedelta(days=self.days))

    async def run(self, database: Database, now: datetime) -> Removed:
        """One pass over every table retention covers; a no-op when disabled."""
        removed = Removed()
        if not self.enabled:
            return removed
        cutoff = self.cutoff_us(now)
        await self._records(database, cutoff, removed)
        rejects = partial(retention.delete_rejects, cutoff_us=cutoff, limit=self.batch_rows)
        removed.rejects = await self._drain(database, rejects, removed)
        batch_ids = partial(retention.delete_batch_ids, cutoff_us=cutoff, limit=self.batch_rows)
        removed.batch_ids = await self._drain(database, batch_ids, removed)
        await self._input_data(database, cutoff, removed)
        return removed

    async def _drain(
        self, database: Database, delete: Callable[[Session], int], removed: Removed
    ) -> int:
        """Run ``delete`` (one bounded statement) until it removes less than a batch."""
        total = 0
        while True:
            count = await database.run(delete)
            removed.statements += 1
            total += count
            if count < self.batch_rows:
                return total
            await asyncio.sleep(self.pause_s)

    async def _records(self, database: Database, cutoff: int, removed: Removed) -> None:
        after = 0
        while pks := await database.run(partial(retention.device_pks, after=after, limit=_PAGE)):
            for pk in pks:
                series = await database.run(
                    partial(retention.expired_series, device_pk=pk, cutoff_us=cutoff)
                )
                for record_type in series:
                    delete = partial(
                        retention.delete_records,
                        device_pk=pk,
                        record_type=record_type,
                        cutoff_us=cutoff,
                        limit=self.batch_rows,
                    )
                    removed.records += await self._drain(database, delete, removed)
            after = pks[-1]

    async def _input_data(self, database: Database, cutoff: int, removed: Removed) -> None:
        after = ""
        while ids := await database.run(partial(retention.input_ids, after=after, limit=_PAGE)):
            for input_id in ids:
                delete = partial(
                    retention.delete_input_data,
                    input_id=input_id,
                    cutoff_us=cutoff,
                    limit=self.batch_rows,
                )
                removed.input_data += await self._drain(database, delete, removed)
            after = ids[-1]
