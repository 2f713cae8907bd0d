"""Datacooee input data: store a value once per (input, timestamp), read and summarise.

Every read is one SQL statement on the unique index (input_id, ts), whatever the number of
inputs asked for. The per-input limit is one ``ORDER BY … LIMIT`` branch per input joined
by ``UNION ALL``: each branch walks the index of its own input and stops at its limit, so
a read costs the rows it returns, not the rows in the window (a ``row_number()`` window
over all inputs would number every row in the window first; docs/datacooee.md,
"Storage"). Statistics are aggregates in SQL (``GROUP BY input_id``); no row is loaded
into Python to be summed.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from server.errors import NotFound
from server.storage import rollups
from server.storage.models import Asset, Input, InputData, asset_inputs

__all__ = [
    "AGGREGATES",
    "InputInfo",
    "NewPoint",
    "StoredPoint",
    "Window",
    "asset_inputs_of",
    "inputs_of",
    "insert_points",
    "read_points",
    "statistics",
    "store_point",
]

_TABLE: sa.Table = InputData.__table__  # type: ignore[assignment]
#: The largest id `assets.id` can hold (a 32-bit integer on PostgreSQL); a larger one names
#: no asset, and PostgreSQL would refuse to compare it with the column.
MAX_ASSET_ID = 2**31 - 1
#: The statistics Datacooee offers, by name, in the order the answers list them.
AGGREGATES = ("min", "max", "avg")
_AGGREGATE_FUNCTIONS: dict[str, Any] = {"min": sa.func.min, "max": sa.func.max, "avg": sa.func.avg}


class NewPoint(NamedTuple):
    """A value to store: ``ts`` epoch microseconds, ``value`` as sent, ``number`` its reading."""

    ts: int
    value: str
    number: float | None
    latitude: float | None = None
    longitude: float | None = None
    meta: str | None = None
    x_axis_value: str | None = None


class StoredPoint(NamedTuple):
    """A stored value with its id."""

    id: int
    input_id: str
    ts: int
    value: str
    number: float | None
    latitude: float | None
    longitude: float | None
    meta: str | None
    x_axis_value: str | None


class InputInfo(NamedTuple):
    """What the answers say of an input."""

    id: str
    name: str
    measure_unit: str


class Window(NamedTuple):
    """A time window in epoch microseconds, both ends included; None is unbounded."""

    start: int | None = None
    end: int | None = None


_POINT_COLUMNS = (
    _TABLE.c.id,
    _TABLE.c.input_id,
    _TABLE.c.ts,
    _TABLE.c.value,
    _TABLE.c.number,
    _TABLE.c.latitude,
    _TABLE.c.longitude,
    _TABLE.c.metadata,
    _TABLE.c.x_axis_value,
)


def _may_exist(input_id: str) -> bool:
    """False for an id no input can have: a NUL, which PostgreSQL refuses even to compare
    (a path or query may carry one as %00)."""
    return "\x00" not in input_id


def _insert(dialect: str) -> Any:
    module: Any = postgresql if dialect == "postgresql" else sqlite
    return module.insert(_TABLE).on_conflict_do_nothing(index_elements=["input_id", "ts"])


def _row(input_id: str, point: NewPoint) -> dict[str, Any]:
    return {
        "input_id": input_id,
        "ts": point.ts,
        "value": point.value,
        "number": point.number,
        "latitude": point.latitude,
        "longitude": point.longitude,
        "metadata": point.meta,
        "x_axis_value": point.x_axis_value,
    }


def store_point(s: Session, org_id: str, input_id: str, point: NewPoint) -> StoredPoint:
    """Store one value of the organisation's input, once: the stored row is returned.

    A value whose (input, timestamp) is stored already is not written again and the stored
    one is returned (the first value wins), so a client that retries after a lost answer
    gets the same resource. NotFound for an input that does not exist or belongs to another
    organisation (one answer for both).
    """
    owned = _may_exist(input_id) and s.scalar(
        sa.select(Input.id).where(Input.id == input_id, Input.org_id == org_id)
    )
    if not owned:
        raise NotFound(f"input {input_id!r} not found")
    connection = s.connection()
    stmt = _insert(connection.dialect.name).execution_options(preserve_rowcount=True)
    if connection.execute(stmt, _row(input_id, point)).rowcount and point.number is not None:
        rollups.mark_input_times(s, input_id, [point.ts])
    row = connection.execute(
        sa.select(*_POINT_COLUMNS).where(_TABLE.c.input_id == input_id, _TABLE.c.ts == point.ts)
    ).one()
    return StoredPoint(*row)


def insert_points(s: Session, input_id: str, points: Iterable[NewPoint]) -> int:
    """Insert many values of one input in one executemany; repeats ignored; the count new.

    For bulk loads (benchmarks, imports); the input is taken to exist.
    """
    rows = [_row(input_id, point) for point in points]
    if not rows:
        return 0
    connection = s.connection()
    stmt = _insert(connection.dialect.name).execution_options(preserve_rowcount=True)
    new = int(connection.execute(stmt, rows).rowcount)
    if new:
        rollups.mark_input_times(s, input_id, [row["ts"] for row in rows])
    return new


def inputs_of(s: Session, org_id: str, input_ids: Sequence[str]) -> list[InputInfo]:
    """The organisation's inputs named, in the order named (repeats once).

    NotFound naming those that do not exist or belong to another organisation.
    """
    wanted = list(dict.fromkeys(input_ids))
    rows = s.execute(
        sa.select(Input.id, Input.name, Input.measure_unit).where(
            Input.org_id == org_id, Input.id.in_([i for i in wanted if _may_exist(i)])
        )
    ).all()
    found = {row.id: InputInfo(row.id, row.name, row.measure_unit) for row in rows}
    missing = [i for i in wanted if i not in found]
    if missing:
        raise NotFound(f"inputs not found: {', '.join(missing)}")
    return [found[i] for i in wanted]


def asset_inputs_of(
    s: Session, org_id: str, asset_id: int, input_ids: Sequence[str]
) -> tuple[int, str, list[InputInfo]]:
    """The organisation's asset (id, name) and its inputs: all of them by id, or those named
    in the order named.

    NotFound for an asset that does not exist or belongs to another organisation, and for
    named inputs that are not the asset's.
    """
    if not 1 <= asset_id <= MAX_ASSET_ID:
        raise NotFound(f"asset {asset_id} not found")
    asset = s.execute(
        sa.select(Asset.id, Asset.name).where(Asset.id == asset_id, Asset.org_id == org_id)
    ).one_or_none()
    if asset is None:
        raise NotFound(f"asset {asset_id} not found")
    rows = s.execute(
        sa.select(Input.id, Input.name, Input.measure_unit)
        .join(asset_inputs, asset_inputs.c.input_id == Input.id)
        .where(asset_inputs.c.asset_id == asset_id)
        .order_by(Input.id)
    ).all()
    members = {row.id: InputInfo(row.id, row.name, row.measure_unit) for row in rows}
    if not input_ids:
        return asset.id, asset.name, list(members.values())
    wanted = list(dict.fromkeys(input_ids))
    missing = [i for i in wanted if i not in members]
    if missing:
        raise NotFound(f"inputs not found in asset {asset_id}: {', '.join(missing)}")
    return asset.id, asset.name, [members[i] for i in wanted]


def _in_window(input_id: str, window: Window) -> list[Any]:
    conditions: list[Any] = [_TABLE.c.input_id == input_id]
    if window.start is not None:
        conditions.append(_TABLE.c.ts >= window.start)
    if window.end is not None:
        conditions.append(_TABLE.c.ts <= window.end)
    return conditions


def _order(by_value: bool, descending: bool, columns: Any) -> list[Any]:
    """ORDER BY terms: the timestamp, or the number (non-numeric values last) then the
    timestamp; explicit NULLS LAST so both databases agree."""

    def direct(column: Any) -> Any:
        return column.desc() if descending else column.asc()

    if by_value:
        return [direct(columns.number).nulls_last(), direct(columns.ts)]
    return [direct(columns.ts)]


def read_points(
    s: Session,
    input_ids: Sequence[str],
    window: Window,
    *,
    limit: int,
    by_value: bool = False,
    descending: bool = False,
) -> dict[str, list[StoredPoint]]:
    """At most ``limit`` values of each input in the window, in the order asked, in one
    statement; every input named is a key of the answer (an empty list when it has none)."""
    answer: dict[str, list[StoredPoint]] = {i: [] for i in input_ids}
    if not answer:
        return answer
    branches = []
    for position, input_id in enumerate(answer):
        inner = (
            sa.select(*_POINT_COLUMNS)
            .where(*_in_window(input_id, window))
            .order_by(*_order(by_value, descending, _TABLE.c))
            .limit(limit)
            .subquery()
        )
        branches.append(sa.select(sa.literal(position).label("position"), *inner.c))
    union = sa.union_all(*branches).subquery("points")
    stmt = sa.select(*list(union.c)[1:]).order_by(
        union.c.position, *_order(by_value, descending, union.c)
    )
    for row in s.execute(stmt).all():
        answer[row[1]].append(StoredPoint(*row))
    return answer


def statistics(
    s: Session,
    input_ids: Sequence[str],
    window: Window,
    aggregates: Sequence[str],
    *,
    limit: int | None = None,
) -> dict[str, dict[str, float | None]]:
    """The ``aggregates`` (of ``AGGREGATES``) of each input's numeric values in the window,
    in one statement; None where an input has no numeric value there.

    With ``limit``, over only the newest ``limit`` numeric values of each input.
    """
    names = [name for name in AGGREGATES if name in aggregates]
    answer: dict[str, dict[str, float | None]] = {
        i: dict.fromkeys(names) for i in dict.fromkeys(input_ids)
    }
    if not answer or not names:
        return answer
    if limit is None:
        start = window.start
        end = None if window.end is None else window.end + 1  # half-open from here on
        spans = rollups.input_spans(start, end)
        if spans is not None and not rollups.inputs_mostly_dirty(
            s, list(answer), spans
        ):  # whole hours from rollups, the ends and dirty hours raw
            parts = rollups.input_parts(list(answer), start, end, spans)
            functions = {name: name for name in names}
            dialect = s.connection().dialect.name
            stmt = rollups.combined_select(parts, functions, dialect, group="input_id")
            for row in s.execute(stmt):
                answer[row[0]] = {name: float(row._mapping[name]) for name in names}
            return answer
        conditions: list[Any] = [_TABLE.c.input_id.in_(list(answer)), _TABLE.c.number.is_not(None)]
        if window.start is not None:
            conditions.append(_TABLE.c.ts >= window.start)
        if window.end is not None:
            conditions.append(_TABLE.c.ts <= window.end)
        source: Any = sa.select(_TABLE.c.input_id, _TABLE.c.number).where(*conditions).subquery()
    else:
        branches = [
            sa.select(
                sa.select(_TABLE.c.input_id, _TABLE.c.number)
                .where(*_in_window(input_id, window), _TABLE.c.number.is_not(None))
                .order_by(_TABLE.c.ts.desc())
                .limit(limit)
                .subquery()
            )
            for input_id in answer
        ]
        source = sa.union_all(*branches).subquery("newest")
    stmt = sa.select(
        source.c.input_id,
        *(_AGGREGATE_FUNCTIONS[name](source.c.number).label(name) for name in names),
    ).group_by(source.c.input_id)
    for row in s.execute(stmt):
        answer[row[0]] = {
            name: None if value is None else float(value)
            for name, value in zip(names, row[1:], strict=True)
        }
    return answer
