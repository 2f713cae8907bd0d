"""Rollups: per-minute (logbook) and per-hour (Datacooee) partial aggregates, kept exact.

A long aggregated read costs about 1 µs of database time per sample (docs/benchmarks.md,
"Logbook reads"). Rollups answer most of it from one row per minute (or hour) instead:

- ``telemetry_rollups`` holds, per (device, record type, UTC minute, key), the count, sum,
  min and max of the key's JSON numbers, as doubles (``float``) and truncated toward zero
  (``long``), and the times of the minute's first and last such sample;
  ``input_rollups`` per (input, UTC hour) the count, sum, min and max of ``number``.
- Whatever changes the raw rows marks their minute (hour) dirty **in the same
  transaction**: ``mark_records`` and ``mark_input_times`` on insert, ``forget_records``
  and ``forget_input_data`` after a retention delete. A device's deletion cascades.
- ``fold_records`` / ``fold_input_data`` (the server's rollup task) recompute the rollups
  of quiet dirty minutes from the raw rows and remove their marks, unless someone marked
  them again meanwhile (each mark carries a version).
- A read takes the clean rollups of the minutes wholly inside its range and its buckets,
  and raw rows for the rest: the range's ragged ends and the dirty minutes. A read that no
  rollup can serve (buckets that cut minutes) is the raw read.

So at every committed state, a minute without a mark has rollups equal to its raw rows:
an insert and its mark commit together, and the fold drops a mark only when the version it
read is still there, after recomputing from rows at least as new (docs/telemetry-reads.md,
"Rollups").
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Session
from sqlalchemy.sql.selectable import Join

from server.storage.models import (
    InputData,
    InputDirtyHour,
    InputRollup,
    TelemetryDirtyMinute,
    TelemetryRecord,
    TelemetryRollup,
)
from server.storage.series import Aggregation, Window, aggregate, bucket_number

__all__ = [
    "DEFAULT_FOLD_LIMIT",
    "HOUR_US",
    "MAX_KEY_LENGTH",
    "MINUTE_US",
    "QUIET_US",
    "combined_select",
    "fold_input_data",
    "fold_records",
    "forget_input_data",
    "forget_records",
    "input_parts",
    "input_spans",
    "inputs_mostly_dirty",
    "mark_input_times",
    "mark_records",
    "mostly_dirty",
    "partial_row",
    "record_parts",
    "record_spans",
]

MINUTE_US = 60_000_000
HOUR_US = 3_600_000_000
#: A dirty minute is folded once nobody marked it for this long: a minute being filled
#: would otherwise be recomputed at every pass while its batches arrive.
QUIET_US = 2_000_000
#: Dirty minutes (hours) one fold pass recomputes: 50 minutes of a device sending 12
#: records a second are ~35,000 records to read, ~0.1 s here, then 50 minutes' rollups
#: written in one short write transaction (ingest waits only for that part).
DEFAULT_FOLD_LIMIT = 50
#: The longest key a logbook field can name (docs/telemetry-reads.md, "Parameters"),
#: written as such into the fold's statements: longer keys are not rolled up.
MAX_KEY_LENGTH = 255
#: How many marks (and rollups) a read counts at most to decide it is mostly dirty.
_COUNT_CAP = 10_000
#: PostgreSQL advisory lock held by a fold pass: replicas fold one at a time, since two
#: passes over one minute could otherwise commit in the opposite order of their reads
#: (the older read last, over the newer one, after the newer pass dropped the mark).
_FOLD_LOCK_ID = 0x7477_726F_6C6C

_RECORDS: sa.Table = TelemetryRecord.__table__  # type: ignore[assignment]
_ROLLUPS: sa.Table = TelemetryRollup.__table__  # type: ignore[assignment]
_DIRTY: sa.Table = TelemetryDirtyMinute.__table__  # type: ignore[assignment]
_INPUT_DATA: sa.Table = InputData.__table__  # type: ignore[assignment]
_INPUT_ROLLUPS: sa.Table = InputRollup.__table__  # type: ignore[assignment]
_INPUT_DIRTY: sa.Table = InputDirtyHour.__table__  # type: ignore[assignment]


def _now_us() -> int:
    return time.time_ns() // 1000


def _floor(ts: int, unit: int) -> int:
    return ts - ts % unit  # Python's % floors: right for times before 1970 too


def _ceil(ts: int, unit: int) -> int:
    return -_floor(-ts, unit)


# --- Marks -------------------------------------------------------------------------------

#: The marks' upserts, in each driver's own parameter style: they run in the writer's
#: transaction, so they go straight to the driver (executemany of tuples), as the records'
#: insert does; through the ORM session they cost more than the records (docs/benchmarks.md,
#: "Logbook reads").
_MARK_MINUTE = (
    "INSERT INTO telemetry_dirty_minutes (device_pk, record_type, minute_ts, version, "
    "marked_ts) VALUES ({p}, {p}, {p}, 1, {p}) "
    "ON CONFLICT (device_pk, record_type, minute_ts) DO UPDATE SET "
    "version = telemetry_dirty_minutes.version + 1, marked_ts = excluded.marked_ts"
)
_MARK_HOUR = (
    "INSERT INTO input_dirty_hours (input_id, hour_ts, version, marked_ts) "
    "VALUES ({p}, {p}, 1, {p}) ON CONFLICT (input_id, hour_ts) DO UPDATE SET "
    "version = input_dirty_hours.version + 1, marked_ts = excluded.marked_ts"
)
_PARAMETER = {"sqlite": "?", "postgresql": "%s"}


def _upsert(session: Session | Connection, statement: str, rows: list[tuple[Any, ...]]) -> None:
    connection = session if isinstance(session, Connection) else session.connection()
    connection.exec_driver_sql(statement.format(p=_PARAMETER[connection.dialect.name]), rows)


def mark_records(
    session: Session | Connection, device_pk: int, records: Iterable[Sequence[Any]]
) -> None:
    """Mark the minutes of ``records`` (``(record type, ts, …)``) of one device dirty.

    Call it in the transaction that stores them. One upsert per distinct (type, minute),
    in key order so that two writers never lock two marks in opposite orders.
    """
    minutes = sorted({(r[0], r[1] - r[1] % MINUTE_US) for r in records})
    if not minutes:
        return
    now = _now_us()
    _upsert(session, _MARK_MINUTE, [(device_pk, t, m, now) for t, m in minutes])


def mark_input_times(session: Session, input_id: str, stamps: Iterable[int]) -> None:
    """Mark the hours of an input's new values (epoch µs ``stamps``) dirty, in their
    transaction."""
    hours = sorted({ts - ts % HOUR_US for ts in stamps})
    if not hours:
        return
    now = _now_us()
    _upsert(session, _MARK_HOUR, [(input_id, h, now) for h in hours])


def forget_records(session: Session, device_pk: int, record_type: str) -> None:
    """After a delete of a series' oldest records: drop the rollups of minutes before the
    oldest record left, and mark that record's minute, which may have lost some."""
    oldest = session.scalar(
        sa.select(_RECORDS.c.ts)
        .where(_RECORDS.c.device_pk == device_pk, _RECORDS.c.record_type == record_type)
        .order_by(_RECORDS.c.ts)
        .limit(1)
    )
    series = (_ROLLUPS.c.device_pk == device_pk, _ROLLUPS.c.record_type == record_type)
    if oldest is None:
        session.execute(sa.delete(_ROLLUPS).where(*series))
        return
    minute = _floor(int(oldest), MINUTE_US)
    session.execute(sa.delete(_ROLLUPS).where(*series, _ROLLUPS.c.minute_ts < minute))
    mark_records(session, device_pk, [(record_type, minute)])


def forget_input_data(session: Session, input_id: str) -> None:
    """After a delete of an input's oldest values: as ``forget_records``, per hour."""
    oldest = session.scalar(
        sa.select(_INPUT_DATA.c.ts)
        .where(_INPUT_DATA.c.input_id == input_id)
        .order_by(_INPUT_DATA.c.ts)
        .limit(1)
    )
    mine = _INPUT_ROLLUPS.c.input_id == input_id
    if oldest is None:
        session.execute(sa.delete(_INPUT_ROLLUPS).where(mine))
        return
    hour = _floor(int(oldest), HOUR_US)
    session.execute(sa.delete(_INPUT_ROLLUPS).where(mine, _INPUT_ROLLUPS.c.hour_ts < hour))
    mark_input_times(session, input_id, [hour])


# --- The fold ----------------------------------------------------------------------------

#: One minute of one series from its raw records, every top-level key holding a JSON
#: number: the same tests and conversions as the logbook's read (server/storage/logbook.py).
#: Columns: the rollup's columns after its key (``key``, ``count``, …, ``last_ts``).
_RECOMPUTE_MINUTE = {
    "sqlite": sa.text(
        "SELECT j.key AS key, count(*) AS count, total(j.value) AS sum_float, "
        "min(j.value) AS min_float, max(j.value) AS max_float, "
        "total(CAST(j.value AS BIGINT)) AS sum_long, min(CAST(j.value AS BIGINT)) AS min_long, "
        "max(CAST(j.value AS BIGINT)) AS max_long, min(r.ts) AS first_ts, max(r.ts) AS last_ts "
        "FROM telemetry_records AS r CROSS JOIN json_each(r.fields) AS j "
        "WHERE r.device_pk = :device_pk AND r.record_type = :record_type "
        "AND r.ts >= :minute_ts AND r.ts < :minute_ts + 60000000 "
        "AND j.type IN ('integer', 'real') AND length(j.key) <= 255 "
        "GROUP BY j.key"
    ),
    "postgresql": sa.text(
        "SELECT j.key AS key, count(*) AS count, sum(CAST(j.value AS FLOAT)) AS sum_float, "
        "min(CAST(j.value AS FLOAT)) AS min_float, max(CAST(j.value AS FLOAT)) AS max_float, "
        "sum(trunc(CAST(j.value AS FLOAT))) AS sum_long, "
        "min(trunc(CAST(j.value AS FLOAT))) AS min_long, "
        "max(trunc(CAST(j.value AS FLOAT))) AS max_long, min(r.ts) AS first_ts, "
        "max(r.ts) AS last_ts "
        "FROM telemetry_records AS r CROSS JOIN LATERAL jsonb_each(r.fields) AS j "
        "WHERE r.device_pk = :device_pk AND r.record_type = :record_type "
        "AND r.ts >= :minute_ts AND r.ts < :minute_ts + 60000000 "
        "AND jsonb_typeof(j.value) = 'number' AND length(j.key) <= 255 "
        "GROUP BY j.key"
    ),
}
_RECOMPUTE_HOUR = {
    "sqlite": sa.text(
        "SELECT count(number) AS count, total(number) AS sum, min(number) AS min, "
        "max(number) AS max "
        "FROM input_data WHERE input_id = :input_id AND ts >= :hour_ts "
        "AND ts < :hour_ts + 3600000000 AND number IS NOT NULL HAVING count(number) > 0"
    ),
    "postgresql": sa.text(
        "SELECT count(number) AS count, sum(number) AS sum, min(number) AS min, "
        "max(number) AS max "
        "FROM input_data WHERE input_id = :input_id AND ts >= :hour_ts "
        "AND ts < :hour_ts + 3600000000 AND number IS NOT NULL HAVING count(number) > 0"
    ),
}


def _locked(session: Session) -> bool:
    """True when this pass may fold: on PostgreSQL when no other replica's pass holds the
    advisory lock; always on SQLite, which one server process serves (replicas share
    PostgreSQL, docs/design.md), so its one rollup task never overlaps itself."""
    if session.connection().dialect.name != "postgresql":
        return True
    query = sa.text("SELECT pg_try_advisory_xact_lock(:id)")
    return bool(session.scalar(query, {"id": _FOLD_LOCK_ID}))


def _fold(
    session: Session,
    dirty: sa.Table,
    rollups: sa.Table,
    keys: Sequence[str],
    recompute: dict[str, sa.TextClause],
    limit: int,
    quiet_us: int,
) -> int:
    """Recompute up to ``limit`` quiet dirty units of ``dirty`` into ``rollups``; drop each
    mark whose version is still the one read. Returns the marks read."""
    if not _locked(session):
        return 0
    columns = [dirty.c[k] for k in keys]
    marks = session.execute(
        sa.select(*columns, dirty.c.version)
        .where(dirty.c.marked_ts <= _now_us() - quiet_us)
        .order_by(*columns)
        .limit(limit)
    ).all()
    if not marks:
        return 0
    units = [dict(zip(keys, mark[:-1], strict=True)) for mark in marks]
    # Read first, write after: on SQLite the reads take no write lock (WAL), so ingest waits
    # only for the three short writes below, however many records the minutes hold. A
    # record committed after the marks were read bumped its mark's version: that mark stays.
    statement = recompute[session.connection().dialect.name]
    values = [
        {**unit, **row._mapping} for unit in units for row in session.execute(statement, unit)
    ]
    same_unit = [rollups.c[k] == sa.bindparam(k) for k in keys]
    session.execute(sa.delete(rollups).where(*same_unit), units)
    if values:
        session.execute(sa.insert(rollups), values)
    same_mark = [dirty.c[k] == sa.bindparam(k) for k in keys]
    session.execute(
        sa.delete(dirty).where(*same_mark, dirty.c.version == sa.bindparam("seen")),
        [{**unit, "seen": mark[-1]} for unit, mark in zip(units, marks, strict=True)],
    )
    return len(marks)


def fold_records(
    session: Session, limit: int = DEFAULT_FOLD_LIMIT, quiet_us: int = QUIET_US
) -> int:
    """One fold pass over device records' dirty minutes; the number of minutes read."""
    keys = ("device_pk", "record_type", "minute_ts")
    return _fold(session, _DIRTY, _ROLLUPS, keys, _RECOMPUTE_MINUTE, limit, quiet_us)


def fold_input_data(
    session: Session, limit: int = DEFAULT_FOLD_LIMIT, quiet_us: int = QUIET_US
) -> int:
    """One fold pass over Datacooee values' dirty hours; the number of hours read."""
    keys = ("input_id", "hour_ts")
    return _fold(session, _INPUT_DIRTY, _INPUT_ROLLUPS, keys, _RECOMPUTE_HOUR, limit, quiet_us)


# --- Reads -------------------------------------------------------------------------------


class _CrossJoin(Join):
    """``left CROSS JOIN right``, the conditions in WHERE: SQLite then keeps ``left`` as the
    outer loop. The raw rows of dirty minutes must be found from the marks (a few index
    ranges), never the marks from the rows: SQLite's planner otherwise walked every value
    of the input and probed the marks for each (docs/benchmarks.md, "Datacooee statistics").
    """

    inherit_cache = True


@compiles(_CrossJoin)
def _cross_join(join: _CrossJoin, compiler: Any, **kw: Any) -> str:
    kw["asfrom"] = True
    left = join.left._compiler_dispatch(compiler, **kw)
    return f"{left} CROSS JOIN {join.right._compiler_dispatch(compiler, **kw)}"


def _marks_then_rows(marks: Any, rows: sa.Table) -> _CrossJoin:
    return _CrossJoin(marks, rows, sa.true())


def record_spans(window: Window) -> tuple[int, int] | None:
    """The whole minutes ``[first, end)`` of ``window`` that rollups may answer, or None.

    A minute may come from a rollup when it lies wholly inside the range and inside one
    bucket: the buckets must not cut minutes, so either the window is one bucket, or its
    start and width are whole minutes. None also when no whole minute is in range.
    """
    single = window.bucket_count == 1
    if not single and (window.start_us % MINUTE_US or window.width_us % MINUTE_US):
        return None
    first, end = _ceil(window.start_us, MINUTE_US), _floor(window.end_us, MINUTE_US)
    return (first, end) if first < end else None


def mostly_dirty(
    session: Session, device_pk: int, record_type: sa.ColumnElement[str], spans: tuple[int, int]
) -> bool:
    """True when at least half the minutes of ``spans`` are marked: the read then scans its
    range as before rollups, since reaching each dirty minute through its mark costs more
    per sample than one range scan (3x on PostgreSQL, docs/benchmarks.md, "Logbook reads").
    One index range over the marks."""
    first, end = spans
    half = (end - first) // MINUTE_US // 2
    marks = (
        sa.select(_DIRTY.c.minute_ts)
        .where(
            _DIRTY.c.device_pk == device_pk,
            _DIRTY.c.record_type == record_type,
            _DIRTY.c.minute_ts >= first,
            _DIRTY.c.minute_ts < end,
        )
        .limit(max(half, 1))
        .subquery()
    )
    return (session.scalar(sa.select(sa.func.count()).select_from(marks)) or 0) >= max(half, 1)


def input_spans(start: int | None, end: int | None) -> tuple[int | None, int | None] | None:
    """The whole hours ``[first, end)`` inside the half-open ``[start, end)`` (None: open),
    or None when there is none."""
    first = None if start is None else _ceil(start, HOUR_US)
    last = None if end is None else _floor(end, HOUR_US)
    if first is not None and last is not None and first >= last:
        return None
    return first, last


def partial_row(
    bucket: sa.ColumnElement[Any], ts: sa.ColumnElement[int], value: sa.ColumnElement[Any]
) -> list[sa.ColumnElement[Any]]:
    """The partial-aggregate columns of one raw sample: a bucket of one."""
    return [
        bucket.label("bucket"),
        sa.literal_column("1", sa.BigInteger).label("n"),
        value.label("total"),
        value.label("low"),
        value.label("high"),
        ts.label("first_ts"),
        ts.label("last_ts"),
    ]


def _combined(rows: Any, function: str, dialect: str) -> Any:
    if function == "avg":
        count = sa.cast(sa.func.sum(rows.c.n), sa.Float)
        return aggregate(Aggregation.SUM, rows.c.total, dialect) / count
    if function == "count":
        return sa.func.sum(rows.c.n)
    if function == "sum":
        return aggregate(Aggregation.SUM, rows.c.total, dialect)
    if function == "min":
        return sa.func.min(rows.c.low)
    return sa.func.max(rows.c.high)


def combined_select(
    parts: Sequence[sa.Select[Any]],
    functions: dict[str, str],
    dialect: str,
    *,
    group: str = "bucket",
    limit: int | None = None,
) -> sa.Select[Any]:
    """The partial aggregates of ``parts`` (each selecting ``group``, ``n``, ``total``,
    ``low``, ``high``, ``first_ts``, ``last_ts``) combined per ``group``, in its order.

    Columns: ``group``, ``first_ts``, ``last_ts``, then one per entry of ``functions``
    (label → ``avg``, ``count``, ``sum``, ``min`` or ``max``): ``avg`` is the sum of the
    partial sums over the sum of the counts, the others combine alike.
    """
    rows = sa.union_all(*parts).subquery("partials")
    statement = (
        sa.select(
            rows.c[group],
            sa.func.min(rows.c.first_ts).label("first_ts"),
            sa.func.max(rows.c.last_ts).label("last_ts"),
            *(_combined(rows, f, dialect).label(label) for label, f in functions.items()),
        )
        .group_by(rows.c[group])
        .order_by(rows.c[group])
    )
    return statement if limit is None else statement.limit(limit)


def record_parts(
    *,
    device_pk: int,
    record_type: sa.ColumnElement[str],
    key_matches: Any,
    value: sa.ColumnElement[Any],
    present: sa.ColumnElement[bool],
    long: bool,
    window: Window,
    spans: tuple[int, int],
) -> list[sa.Select[Any]]:
    """The partials of one logbook read: raw rows at the two ragged ends, raw rows of the
    dirty minutes in between, and the clean rollups of the rest.

    ``record_type`` is the read's chosen record type (a scalar subquery), ``key_matches``
    a callable giving the condition on a rollup's (record type, key) columns, ``value`` and
    ``present`` the raw extraction over ``telemetry_records``.
    """
    first, end = spans
    ts = _RECORDS.c.ts
    series = (_RECORDS.c.device_pk == device_pk, _RECORDS.c.record_type == record_type, present)
    raw = partial_row(bucket_number(ts, window), ts, value)
    parts: list[sa.Select[Any]] = []
    if window.start_us < first:
        parts.append(sa.select(*raw).where(*series, ts >= window.start_us, ts < first))
    if end < window.end_us:
        parts.append(sa.select(*raw).where(*series, ts >= end, ts < window.end_us))
    dirty = _DIRTY.alias("dirty")
    in_dirty = (
        sa.select(*raw)
        .select_from(_marks_then_rows(dirty, _RECORDS))
        .where(
            dirty.c.device_pk == device_pk,
            dirty.c.record_type == record_type,
            dirty.c.minute_ts >= first,
            dirty.c.minute_ts < end,
            _RECORDS.c.device_pk == device_pk,
            _RECORDS.c.record_type == dirty.c.record_type,
            ts >= dirty.c.minute_ts,
            ts < dirty.c.minute_ts + MINUTE_US,
            present,
        )
    )
    parts.append(in_dirty)
    r = _ROLLUPS
    suffix = "long" if long else "float"
    marked = (
        sa.select(sa.literal(1))
        .where(
            _DIRTY.c.device_pk == device_pk,
            _DIRTY.c.record_type == r.c.record_type,
            _DIRTY.c.minute_ts == r.c.minute_ts,
        )
        .exists()
    )
    parts.append(
        sa.select(
            bucket_number(r.c.minute_ts, window).label("bucket"),
            r.c.count.label("n"),
            r.c[f"sum_{suffix}"].label("total"),
            r.c[f"min_{suffix}"].label("low"),
            r.c[f"max_{suffix}"].label("high"),
            r.c.first_ts,
            r.c.last_ts,
        ).where(
            r.c.device_pk == device_pk,
            r.c.record_type == record_type,
            key_matches(r.c.record_type, r.c.key),
            r.c.minute_ts >= first,
            r.c.minute_ts < end,
            ~marked,
        )
    )
    return parts


def inputs_mostly_dirty(
    session: Session, input_ids: Sequence[str], spans: tuple[int | None, int | None]
) -> bool:
    """True when the inputs' whole hours in ``spans`` are at least as often dirty as clean
    (a load not folded yet): the statistics then scan the window as before rollups, which
    costs less than reaching each hour through its mark (3x on both databases for a
    million values all dirty, docs/benchmarks.md, "Datacooee statistics"). Two counts, each
    stopped after ``_COUNT_CAP`` index entries."""
    first, last = spans

    def count(table: sa.Table, cap: int) -> int:
        conditions: list[Any] = [table.c.input_id.in_(list(input_ids))]
        if first is not None:
            conditions.append(table.c.hour_ts >= first)
        if last is not None:
            conditions.append(table.c.hour_ts < last)
        rows = sa.select(table.c.hour_ts).where(*conditions).limit(cap).subquery()
        return session.scalar(sa.select(sa.func.count()).select_from(rows)) or 0

    dirty = count(_INPUT_DIRTY, _COUNT_CAP)
    return dirty > 0 and count(_INPUT_ROLLUPS, dirty + 1) <= dirty


def input_parts(
    input_ids: Sequence[str],
    start: int | None,
    end: int | None,
    spans: tuple[int | None, int | None],
) -> list[sa.Select[Any]]:
    """The partials of a Datacooee statistics read over ``[start, end)`` (None: open),
    grouped by input: raw values at the ragged ends and in dirty hours, rollups elsewhere."""
    first, last = spans
    d = _INPUT_DATA
    ts = d.c.ts
    mine = (d.c.input_id.in_(list(input_ids)), d.c.number.is_not(None))
    raw = partial_row(d.c.input_id, ts, d.c.number)
    raw[0] = d.c.input_id.label("input_id")
    parts: list[sa.Select[Any]] = []
    if start is not None and first is not None and start < first:
        parts.append(sa.select(*raw).where(*mine, ts >= start, ts < first))
    if end is not None and last is not None and last < end:
        parts.append(sa.select(*raw).where(*mine, ts >= last, ts < end))
    dirty = _INPUT_DIRTY.alias("dirty")
    hours: list[Any] = [dirty.c.input_id.in_(list(input_ids))]
    if first is not None:
        hours.append(dirty.c.hour_ts >= first)
    if last is not None:
        hours.append(dirty.c.hour_ts < last)
    parts.append(
        sa.select(*raw)
        .select_from(_marks_then_rows(dirty, d))
        .where(
            *hours,
            d.c.input_id == dirty.c.input_id,
            ts >= dirty.c.hour_ts,
            ts < dirty.c.hour_ts + HOUR_US,
            d.c.number.is_not(None),
        )
    )
    r = _INPUT_ROLLUPS
    marked = (
        sa.select(sa.literal(1))
        .where(_INPUT_DIRTY.c.input_id == r.c.input_id, _INPUT_DIRTY.c.hour_ts == r.c.hour_ts)
        .exists()
    )
    clean: list[Any] = [r.c.input_id.in_(list(input_ids)), ~marked]
    if first is not None:
        clean.append(r.c.hour_ts >= first)
    if last is not None:
        clean.append(r.c.hour_ts < last)
    parts.append(
        sa.select(
            r.c.input_id,
            r.c.count.label("n"),
            r.c.sum.label("total"),
            r.c.min.label("low"),
            r.c.max.label("high"),
            r.c.hour_ts.label("first_ts"),
            r.c.hour_ts.label("last_ts"),
        ).where(*clean)
    )
    return parts
