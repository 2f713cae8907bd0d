"""Retention's SQL: bounded deletes of telemetry older than a cutoff, each on an index.

Every delete removes at most ``limit`` rows, so that no statement holds the write lock (or
a long transaction) for long, on SQLite or PostgreSQL. Device records are deleted by their
own time (``@ts``), one (device, record type) series at a time, through the primary key
(device, record type, ts): there is no index on ``ts`` alone, and none is added, since each
would cost every insert a second B-tree (docs/design.md, "Telemetry storage"). Rejected
records and link batch ids are deleted by when they arrived (``received_ts``, indexed);
Datacooee values by their time, one input at a time, through the (input, ts) index. Each
delete is one index range up to the batch's last key, found by walking that many index
entries.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from server.storage import rollups
from server.storage.models import (
    Device,
    Input,
    InputData,
    TelemetryBatch,
    TelemetryRecord,
    TelemetryReject,
)

__all__ = [
    "delete_batch_ids",
    "delete_input_data",
    "delete_records",
    "delete_rejects",
    "device_pks",
    "expired_series",
    "input_ids",
]

_RECORDS: sa.Table = TelemetryRecord.__table__  # type: ignore[assignment]
_REJECTS: sa.Table = TelemetryReject.__table__  # type: ignore[assignment]
_BATCHES: sa.Table = TelemetryBatch.__table__  # type: ignore[assignment]
_INPUT_DATA: sa.Table = InputData.__table__  # type: ignore[assignment]


def device_pks(session: Session, after: int, limit: int) -> list[int]:
    """Device primary keys above ``after``, ascending, at most ``limit``."""
    query = sa.select(Device.id).where(Device.id > after).order_by(Device.id).limit(limit)
    return list(session.scalars(query))


def input_ids(session: Session, after: str, limit: int) -> list[str]:
    """Datacooee input ids above ``after``, ascending, at most ``limit``."""
    query = sa.select(Input.id).where(Input.id > after).order_by(Input.id).limit(limit)
    return list(session.scalars(query))


def expired_series(session: Session, device_pk: int, cutoff_us: int) -> list[str]:
    """The device's record types that have records older than ``cutoff_us``.

    A loose index scan: one seek for each record type (the next type after the last one)
    and one for its oldest record, never a scan of the device's records.
    """
    expired: list[str] = []
    after: str | None = None
    while True:
        next_type = (
            sa.select(_RECORDS.c.record_type)
            .where(_RECORDS.c.device_pk == device_pk)
            .order_by(_RECORDS.c.record_type)
            .limit(1)
        )
        if after is not None:
            next_type = next_type.where(_RECORDS.c.record_type > after)
        record_type = session.scalar(next_type)
        if record_type is None:
            return expired
        oldest = session.scalar(
            sa.select(_RECORDS.c.ts)
            .where(_RECORDS.c.device_pk == device_pk, _RECORDS.c.record_type == record_type)
            .order_by(_RECORDS.c.ts)
            .limit(1)
        )
        if oldest is not None and oldest < cutoff_us:
            expired.append(record_type)
        after = record_type


def _nth(column: sa.ColumnElement[Any], where: Sequence[sa.ColumnElement[bool]], limit: int) -> Any:
    """The ``limit``-th smallest ``column`` among the rows ``where`` selects (NULL when there
    are fewer): the upper bound of one batch, found by walking ``limit`` index entries."""
    return (
        sa.select(column).where(*where).order_by(column).offset(limit - 1).limit(1)
    ).scalar_subquery()


def _delete_range(
    table: sa.Table,
    column: sa.ColumnElement[Any],
    where: Sequence[sa.ColumnElement[bool]],
    limit: int,
) -> sa.Delete:
    """``DELETE … WHERE <where> AND column <= <the limit-th column>``: one index range,
    at most ``limit`` rows when ``column`` is unique among the rows ``where`` selects (and
    otherwise also the rows that tie with the last one).

    A range, not ``IN (SELECT … LIMIT n)``: PostgreSQL plans that as a semi-join and may
    scan the whole table to probe it.
    """
    last = sa.select(sa.func.max(column)).where(*where).scalar_subquery()
    bound = sa.func.coalesce(_nth(column, where, limit), last)
    return sa.delete(table).where(*where, column <= bound)


def delete_records(
    session: Session, device_pk: int, record_type: str, cutoff_us: int, limit: int
) -> int:
    """Delete up to ``limit`` of the series' oldest records older than ``cutoff_us``."""
    where = (
        _RECORDS.c.device_pk == device_pk,
        _RECORDS.c.record_type == record_type,
        _RECORDS.c.ts < cutoff_us,
    )
    statement = _delete_range(_RECORDS, _RECORDS.c.ts, where, limit)
    deleted = int(session.execute(statement).rowcount)  # type: ignore[attr-defined]
    if deleted:
        rollups.forget_records(session, device_pk, record_type)
    return deleted


def delete_rejects(session: Session, cutoff_us: int, limit: int) -> int:
    """Delete the ``limit`` rejected records that arrived first before ``cutoff_us``, and
    any that arrived in the same microsecond as the last of them (one push's rejects share
    their arrival time, so a batch ends on a whole push)."""
    where = (_REJECTS.c.received_ts < cutoff_us,)
    statement = _delete_range(_REJECTS, _REJECTS.c.received_ts, where, limit)
    return int(session.execute(statement).rowcount)  # type: ignore[attr-defined]


def delete_batch_ids(session: Session, cutoff_us: int, limit: int) -> int:
    """Delete the ``limit`` link batch ids stored first before ``cutoff_us``, and any
    stored in the same microsecond as the last of them (batches committed together)."""
    where = (_BATCHES.c.received_ts < cutoff_us,)
    statement = _delete_range(_BATCHES, _BATCHES.c.received_ts, where, limit)
    return int(session.execute(statement).rowcount)  # type: ignore[attr-defined]


def delete_input_data(session: Session, input_id: str, cutoff_us: int, limit: int) -> int:
    """Delete up to ``limit`` of the input's oldest values older than ``cutoff_us``."""
    where = (_INPUT_DATA.c.input_id == input_id, _INPUT_DATA.c.ts < cutoff_us)
    statement = _delete_range(_INPUT_DATA, _INPUT_DATA.c.ts, where, limit)
    deleted = int(session.execute(statement).rowcount)  # type: ignore[attr-defined]
    if deleted:
        rollups.forget_input_data(session, input_id)
    return deleted
