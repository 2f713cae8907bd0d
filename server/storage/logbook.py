"""Logbook reads: one field of one device's records over a time range, raw or bucketed.

A field names a record type and a key of its records: ``obd.bat.voltage`` is the key
``voltage`` of ``obd.bat`` records. Record types contain dots themselves, so a field with
several dots could be split in several places; the rule (docs/telemetry-reads.md, "Field
resolution") is: the **longest record type the device has** among the prefixes that end
at a dot, the rest of the field being the key. The choice is made inside the read's one
statement, by a ``COALESCE`` of primary-key probes, longest first, so a read is always one
statement on the index (device, record type, ts).

Values are taken out of the stored JSON in SQL: ``json_extract``/``json_type`` on SQLite
(``fields`` is text), ``->``/``jsonb_typeof`` on PostgreSQL (``fields`` is jsonb). A
numeric read keeps only JSON numbers (never booleans or numeric strings); a string read
only JSON strings; a geo read only objects whose ``lat`` and ``lon`` are numbers. Other
records of the type are skipped, not errors.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, NamedTuple

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import Session

from server.storage import rollups
from server.storage.devices import DEVICE_ID_RE
from server.storage.models import Device, TelemetryRecord
from server.storage.series import Aggregation, Window, aggregated_select

__all__ = [
    "MAX_FIELD_LENGTH",
    "Bucket",
    "FieldType",
    "GeoPoint",
    "Sample",
    "explain",
    "field_splits",
    "find_device",
    "read_aggregated",
    "read_points",
    "read_raw",
]

#: A record type is at most 128 characters (server/storage/telemetry.py); a key as long.
MAX_FIELD_LENGTH = 257
#: Printable, and no double quote: it would end SQLite's quoted JSON path label.
_FIELD_RE = re.compile(r'[^\x00-\x1f\x7f"]+')

_TABLE: sa.Table = TelemetryRecord.__table__  # type: ignore[assignment]


class FieldType(StrEnum):
    """How a field's values are read (AutoPi's ``field_type``)."""

    FLOAT = "float"
    LONG = "long"
    STRING = "string"
    GEO_POINT = "geo_point"

    @property
    def numeric(self) -> bool:
        return self in (FieldType.FLOAT, FieldType.LONG)


class Sample(NamedTuple):
    """One raw value: its time (epoch µs) and the value (a number or a string)."""

    ts: int
    value: Any


class GeoPoint(NamedTuple):
    """One raw position: its time (epoch µs), latitude and longitude."""

    ts: int
    lat: float
    lon: float


class Bucket(NamedTuple):
    """One non-empty bucket: its first and last sample's times (epoch µs), the aggregate."""

    first_ts: int
    last_ts: int
    value: Any


def find_device(session: Session, user_id: int, device_ref: str) -> Device | None:
    """The user's device named by its unit id (a UUID, any case) or its device id; None
    for anything else, other users' devices included (the caller answers both alike)."""
    try:
        unit_id = str(uuid.UUID(device_ref))
    except ValueError:
        if not DEVICE_ID_RE.fullmatch(device_ref):
            return None  # no device has this name: PostgreSQL would refuse a NUL, say
        match = Device.device_id == device_ref
    else:
        match = Device.unit_id == unit_id
    return session.scalar(sa.select(Device).where(Device.user_id == user_id, match))


def field_splits(field: str) -> list[tuple[str, str]] | None:
    """Every (record type, key) a field may mean, longest record type first; None when the
    field is not a valid name: no dot, an empty part (``obd..x``, ``obd.bat.``), a double
    quote, a control character, or longer than ``MAX_FIELD_LENGTH``."""
    if not field or len(field) > MAX_FIELD_LENGTH or not _FIELD_RE.fullmatch(field):
        return None
    if "" in field.split("."):  # a leading, trailing or doubled dot names nothing
        return None
    splits = [(field[:i], field[i + 1 :]) for i in range(len(field) - 1, 0, -1) if field[i] == "."]
    splits = [(t, k) for t, k in splits if len(t) <= 128]
    return splits or None


@dataclass(frozen=True)
class _Field:
    """The SQL pieces of one field read: the chosen record type and the value's extraction."""

    record_type: sa.ColumnElement[str]
    value: sa.ColumnElement[Any]
    present: sa.ColumnElement[bool]
    extra: tuple[sa.ColumnElement[Any], ...] = ()


def _chosen_type(device_pk: int, splits: Sequence[tuple[str, str]]) -> sa.ColumnElement[str]:
    """The longest candidate record type the device has: a COALESCE of primary-key probes,
    each a scalar subquery evaluated once per statement."""
    probes = [
        sa.select(_TABLE.c.record_type)
        .where(_TABLE.c.device_pk == device_pk, _TABLE.c.record_type == record_type)
        # The key's order: PostgreSQL would otherwise bet on a sequential scan finding
        # some row of a common type early, and read the heap instead of one index entry.
        .order_by(_TABLE.c.ts)
        .limit(1)
        .scalar_subquery()
        for record_type, _ in splits
    ]
    if len(probes) == 1:
        return probes[0]
    return sa.func.coalesce(*probes)


def _by_type(
    splits: Sequence[tuple[str, str]], pick: Any, record_type: sa.ColumnElement[str]
) -> sa.ColumnElement[Any]:
    """``pick(key)`` for the key of the row's record type (a CASE when there are several)."""
    if len(splits) == 1:
        return pick(splits[0][1])
    return sa.case(*((record_type == t, pick(k)) for t, k in splits))


def _sqlite_path(key: str, *inner: str) -> str:
    return '$."' + key + '"' + "".join("." + part for part in inner)


def _sqlite_field(splits: Sequence[tuple[str, str]], field_type: FieldType) -> _Field:
    fields = _TABLE.c.fields
    rt = _TABLE.c.record_type

    def json_type(key: str, *inner: str) -> sa.ColumnElement[str]:
        return sa.func.json_type(fields, _sqlite_path(key, *inner))

    def extract(key: str, *inner: str) -> sa.ColumnElement[Any]:
        return sa.func.json_extract(fields, _sqlite_path(key, *inner))

    numbers = ("integer", "real")
    if field_type is FieldType.GEO_POINT:
        present = _by_type(
            splits,
            lambda k: sa.and_(json_type(k, "lat").in_(numbers), json_type(k, "lon").in_(numbers)),
            rt,
        )
        lat = _by_type(splits, lambda k: extract(k, "lat"), rt)
        lon = _by_type(splits, lambda k: extract(k, "lon"), rt)
        return _Field(rt, lat, present, (lon,))
    if field_type is FieldType.STRING:
        return _Field(
            rt,
            _by_type(splits, extract, rt),
            _by_type(splits, lambda k: json_type(k) == "text", rt),
        )
    value = _by_type(splits, extract, rt)
    if field_type is FieldType.LONG:
        value = sa.cast(value, sa.BigInteger)  # SQLite's CAST truncates toward zero
    return _Field(rt, value, _by_type(splits, lambda k: json_type(k).in_(numbers), rt))


def _postgres_field(splits: Sequence[tuple[str, str]], field_type: FieldType) -> _Field:
    fields = sa.type_coerce(_TABLE.c.fields, postgresql.JSONB)
    rt = _TABLE.c.record_type

    def node(key: str, *inner: str) -> sa.ColumnElement[Any]:
        element = fields.op("->")(sa.literal(key, sa.Text))
        for part in inner:
            element = element.op("->")(sa.literal(part, sa.Text))
        return element

    def is_number(key: str, *inner: str) -> sa.ColumnElement[bool]:
        return sa.func.jsonb_typeof(node(key, *inner)) == "number"

    def number(key: str, *inner: str) -> sa.ColumnElement[float]:
        return sa.cast(node(key, *inner), sa.Float)  # jsonb number -> double precision

    if field_type is FieldType.GEO_POINT:
        present = _by_type(splits, lambda k: sa.and_(is_number(k, "lat"), is_number(k, "lon")), rt)
        lat = _by_type(splits, lambda k: number(k, "lat"), rt)
        lon = _by_type(splits, lambda k: number(k, "lon"), rt)
        return _Field(rt, lat, present, (lon,))
    if field_type is FieldType.STRING:
        return _Field(
            rt,
            _by_type(splits, lambda k: fields.op("->>")(sa.literal(k, sa.Text)), rt),
            _by_type(splits, lambda k: sa.func.jsonb_typeof(node(k)) == "string", rt),
        )
    value = _by_type(splits, number, rt)
    if field_type is FieldType.LONG:
        value = sa.func.trunc(value)  # toward zero, as SQLite's CAST
    return _Field(rt, value, _by_type(splits, is_number, rt))


def _field(
    session: Session, device_pk: int, splits: Sequence[tuple[str, str]], field_type: FieldType
) -> tuple[_Field, list[sa.ColumnElement[bool]], str]:
    dialect = session.connection().dialect.name
    extraction = (
        _postgres_field(splits, field_type)
        if dialect == "postgresql"
        else _sqlite_field(splits, field_type)
    )
    where = [
        _TABLE.c.device_pk == device_pk,
        _TABLE.c.record_type == _chosen_type(device_pk, splits),
        extraction.present,
    ]
    return extraction, where, dialect


def _raw_select(
    session: Session,
    device_pk: int,
    splits: Sequence[tuple[str, str]],
    field_type: FieldType,
    start_us: int,
    end_us: int,
    limit: int,
) -> sa.Select[Any]:
    """Oldest first within the range: rows come in index order (no sort), LIMIT stops it."""
    extraction, where, _ = _field(session, device_pk, splits, field_type)
    ts = _TABLE.c.ts
    return (
        sa.select(ts, extraction.value, *extraction.extra)
        .where(*where, ts >= start_us, ts < end_us)
        .order_by(ts)
        .limit(limit)
    )


def read_raw(
    session: Session,
    device_pk: int,
    splits: Sequence[tuple[str, str]],
    field_type: FieldType,
    start_us: int,
    end_us: int,
    limit: int,
) -> list[Sample]:
    """The field's values with ``start_us <= ts < end_us``, oldest first, at most ``limit``:
    floats, integers (``long``, truncated toward zero) or strings. One statement."""
    if field_type is FieldType.GEO_POINT:
        raise ValueError("positions are read with read_points")
    statement = _raw_select(session, device_pk, splits, field_type, start_us, end_us, limit)
    convert: Any = {FieldType.FLOAT: float, FieldType.LONG: int}.get(field_type, str)
    return [Sample(int(t), convert(v)) for t, v in session.execute(statement)]


def read_points(
    session: Session,
    device_pk: int,
    splits: Sequence[tuple[str, str]],
    start_us: int,
    end_us: int,
    limit: int,
) -> list[GeoPoint]:
    """The field's positions (objects with numeric ``lat`` and ``lon``) in the range,
    oldest first, at most ``limit``. One statement."""
    statement = _raw_select(
        session, device_pk, splits, FieldType.GEO_POINT, start_us, end_us, limit
    )
    return [GeoPoint(int(t), float(lat), float(lon)) for t, lat, lon in session.execute(statement)]


def read_aggregated(
    session: Session,
    device_pk: int,
    splits: Sequence[tuple[str, str]],
    field_type: FieldType,
    function: Aggregation,
    window: Window,
    limit: int,
) -> list[Bucket]:
    """The field's non-empty buckets over ``window``, oldest first, at most ``limit``.

    Numeric fields only (``field_type`` float or long). ``count`` and the aggregates of a
    long field are whole numbers, except ``avg``, which is a float for both types.
    """
    if not field_type.numeric:
        raise ValueError("only numeric fields aggregate")
    extraction, where, dialect = _field(session, device_pk, splits, field_type)
    spans = rollups.record_spans(window)
    if spans is not None and rollups.mostly_dirty(
        session, device_pk, _chosen_type(device_pk, splits), spans
    ):
        spans = None
    statement: sa.Select[Any]
    if spans is None:  # buckets that cut minutes, or most minutes dirty: samples are read
        statement = aggregated_select(
            ts=_TABLE.c.ts,
            value=extraction.value,
            where=where,
            function=function,
            window=window,
            dialect=dialect,
            limit=limit,
        )
    else:
        statement = _rollup_select(
            device_pk, splits, field_type, function, window, spans, extraction, dialect
        ).limit(limit)
    whole = function is Aggregation.COUNT or (
        field_type is FieldType.LONG and function is not Aggregation.AVG
    )
    # Fetched at once: row by row, psycopg's fetchone cost a third of a 1,440-bucket read.
    convert = int if whole else float
    return [
        Bucket(int(first), int(last), convert(value))
        for _, first, last, value in session.execute(statement).all()
    ]


def _rollup_select(
    device_pk: int,
    splits: Sequence[tuple[str, str]],
    field_type: FieldType,
    function: Aggregation,
    window: Window,
    spans: tuple[int, int],
    extraction: _Field,
    dialect: str,
) -> sa.Select[Any]:
    """The aggregated read from rollups where they are clean and raw samples elsewhere
    (docs/telemetry-reads.md, "Rollups"): the buckets and values of the raw read."""

    def key_matches(rt: sa.ColumnElement[str], key: sa.ColumnElement[str]) -> Any:
        return sa.or_(*(sa.and_(rt == t, key == k) for t, k in splits))

    parts = rollups.record_parts(
        device_pk=device_pk,
        record_type=_chosen_type(device_pk, splits),
        key_matches=key_matches,
        value=extraction.value,
        present=extraction.present,
        long=field_type is FieldType.LONG,
        window=window,
        spans=spans,
    )
    return rollups.combined_select(parts, {"value": function.value}, dialect)


def explain(session: Session, statement: sa.Executable) -> str:
    """The database's plan for ``statement`` as text (tests check it uses the index)."""
    dialect = session.connection().dialect.name
    compiled = statement.compile(  # type: ignore[attr-defined]
        dialect=session.connection().dialect, compile_kwargs={"literal_binds": True}
    )
    prefix = "EXPLAIN QUERY PLAN " if dialect == "sqlite" else "EXPLAIN "
    rows = session.execute(sa.text(prefix + str(compiled))).all()
    return "\n".join(" ".join(str(part) for part in row) for row in rows)
