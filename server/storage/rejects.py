"""Reading the records set aside from a device's batches (``telemetry_rejects``).

Newest first, by id (ids only grow: the table is AUTOINCREMENT on SQLite, a sequence on
PostgreSQL), so a page is one indexed range read and the next page starts below the last
id seen. The total is one COUNT in SQL.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import sqlalchemy as sa
from sqlalchemy.orm import Session

from server.storage.models import TelemetryReject

__all__ = ["RejectPage", "RejectRow", "list_rejects"]


class RejectRow(NamedTuple):
    """One rejected record as stored; ``received_ts`` is epoch microseconds."""

    id: int
    position: int
    reason: str
    record: str
    received_ts: int
    source: str


class RejectPage(NamedTuple):
    """Up to ``limit`` rows, whether more follow, and the device's total."""

    rows: Sequence[RejectRow]
    more: bool
    total: int


def list_rejects(
    session: Session, device_pk: int, limit: int, before_id: int | None = None
) -> RejectPage:
    """The device's rejected records, newest first, with ids below ``before_id`` if given."""
    query = sa.select(
        TelemetryReject.id,
        TelemetryReject.position,
        TelemetryReject.reason,
        TelemetryReject.record,
        TelemetryReject.received_ts,
        TelemetryReject.source,
    ).where(TelemetryReject.device_pk == device_pk)
    if before_id is not None:
        query = query.where(TelemetryReject.id < before_id)
    rows = [
        RejectRow(*row)
        for row in session.execute(query.order_by(TelemetryReject.id.desc()).limit(limit + 1))
    ]
    total = session.scalar(
        sa.select(sa.func.count())
        .select_from(TelemetryReject)
        .where(TelemetryReject.device_pk == device_pk)
    )
    return RejectPage(rows[:limit], len(rows) > limit, int(total or 0))
