"""The one way telemetry reaches the database: ``TelemetryWriter.write``.

Both faces of ingest (the HTTP push and the device link) hand a split batch to the writer
and answer the device only once ``write`` returned, which means the batch's records, its
rejects and its batch id are committed together (docs/design.md, "Telemetry storage").

This first version runs one unit of work per batch; the group commit (one transaction for
every batch waiting at that moment, each caller answered after its own rows commit)
replaces its inside without changing the interface.
"""

from __future__ import annotations

from typing import NamedTuple

from sqlalchemy.orm import Session

from server.clock import Clock, utc_now
from server.storage import telemetry
from server.storage.db import Database
from server.storage.telemetry import Split

__all__ = ["TelemetryWriter", "WriteOutcome"]


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


class TelemetryWriter:
    """Stores batches of device records durably; shared by every ingest face."""

    def __init__(self, database: Database, clock: Clock = utc_now) -> None:
        self._database = database
        self._clock = clock

    async def write(
        self, device_pk: int, split: Split, source: str, batch_id: str | None = None
    ) -> WriteOutcome:
        """Store ``split`` for the device; returns once it is committed.

        ``source`` ("http" or "link") is kept with the rejects. ``batch_id`` (the link's)
        makes the whole batch idempotent: a batch id stored before writes nothing.
        Raises what the database raises; the caller answers 5xx and the device retries.
        """
        received_ts = int(self._clock().timestamp() * 1_000_000)

        def unit(session: Session) -> WriteOutcome:
            if batch_id is not None and not telemetry.claim_batch(
                session, device_pk, batch_id, received_ts
            ):
                return WriteOutcome(0, len(split.usable), len(split.rejected), batch_repeat=True)
            counts = telemetry.store_records(session, device_pk, split.usable)
            telemetry.store_rejects(session, device_pk, source, split.rejected, received_ts)
            return WriteOutcome(counts.new, counts.repeats, len(split.rejected))

        return await self._database.run(unit)

    async def stop(self) -> None:
        """Finish what was handed in; the group commit drains its queue here."""
