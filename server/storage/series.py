"""The bucket-and-aggregate rule of every time-series read, as one SQL statement.

A series is any table with an integer timestamp column in epoch microseconds and a value
(the logbook's device records, Datacooee's input data). Aggregating it over an interval
means: keep the samples with ``start <= ts < end``, number each sample's bucket
``(ts - start) / width`` with integer arithmetic (``ts >= start``, so integer division is
the floor), group by that number in SQL and aggregate each group. Buckets without samples
produce no group, so they are absent from the answer. Nothing is loaded into Python to
aggregate and there is never one query per bucket (docs/telemetry-reads.md, "Buckets").

The same arithmetic runs on SQLite and PostgreSQL: ``ts`` is a ``BIGINT`` on both, so there
is no ``date_bin`` and no time zone to get wrong.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import sqlalchemy as sa

__all__ = [
    "MAX_BUCKETS",
    "Aggregation",
    "Window",
    "aggregate",
    "aggregated_select",
    "bucket_number",
]

#: The most buckets one read may ask for: the grouping's cost follows the rows in range,
#: but an interval of 1 ms over ten years would be an answer nobody can use.
MAX_BUCKETS = 100_000


class Aggregation(StrEnum):
    """The aggregate computed over each bucket's values."""

    AVG = "avg"
    MIN = "min"
    MAX = "max"
    SUM = "sum"
    COUNT = "count"


@dataclass(frozen=True)
class Window:
    """A half-open time range ``[start_us, end_us)`` cut into buckets of ``width_us``.

    Buckets are aligned on ``start_us``: bucket ``n`` holds ``start + n*width <= ts <
    start + (n+1)*width``; the last one is cut short at ``end_us`` when the range is not a
    whole number of widths.
    """

    start_us: int
    end_us: int
    width_us: int

    def __post_init__(self) -> None:
        if self.end_us <= self.start_us:
            raise ValueError("a window ends after it starts")
        if self.width_us <= 0:
            raise ValueError("a bucket is at least 1 µs wide")

    @property
    def bucket_count(self) -> int:
        """How many buckets the window holds (the last one possibly short)."""
        return -(-(self.end_us - self.start_us) // self.width_us)

    def bucket_start(self, bucket: int) -> int:
        """The first microsecond of bucket number ``bucket``."""
        return self.start_us + bucket * self.width_us


def bucket_number(ts: sa.ColumnElement[int], window: Window) -> sa.ColumnElement[int]:
    """``(ts - start) / width`` in integer arithmetic: the bucket of each sample.

    ``//`` renders as ``/`` on integer operands on both backends (integer division). The
    two integers are written into the SQL rather than bound: the expression appears in the
    select list and in GROUP BY, and PostgreSQL proves them the same expression only when
    they are textually equal, which two bind parameters are not.
    """
    start = sa.literal_column(f"({int(window.start_us)})", sa.BigInteger)
    width = sa.literal_column(str(int(window.width_us)), sa.BigInteger)
    return (ts - start) // width


def aggregate(function: Aggregation, value: sa.ColumnElement[Any], dialect: str) -> Any:
    """The SQL aggregate of ``value`` for ``function``.

    SQLite's ``sum`` raises on 64-bit integer overflow; its ``total`` sums in floating
    point, as PostgreSQL's ``sum`` of ``double precision`` does, and the answer is a JSON
    number (a double) either way.
    """
    if function is Aggregation.AVG:
        return sa.func.avg(value)
    if function is Aggregation.MIN:
        return sa.func.min(value)
    if function is Aggregation.MAX:
        return sa.func.max(value)
    if function is Aggregation.SUM:
        return sa.func.total(value) if dialect == "sqlite" else sa.func.sum(value)
    return sa.func.count(value)


def aggregated_select(
    *,
    ts: sa.ColumnElement[int],
    value: sa.ColumnElement[Any],
    where: Sequence[sa.ColumnElement[bool]],
    function: Aggregation,
    window: Window,
    dialect: str,
    partition: Sequence[sa.ColumnElement[Any]] = (),
    limit: int | None = None,
) -> sa.Select[Any]:
    """One statement: the non-empty buckets of ``window``, oldest first.

    Columns, in order: each ``partition`` column (e.g. a Datacooee input id, to aggregate
    several series at once), ``bucket`` (its number from 0), ``first_ts`` and ``last_ts``
    (the µs times of the bucket's first and last sample) and ``value`` (the aggregate).
    ``where`` selects the series and the samples that have a value (its rows should be
    reachable through an index that starts with the series' key and then ``ts``); the
    window's bounds are added here. ``limit`` caps the number of rows (of buckets).
    """
    names = [
        getattr(column, "name", None) or f"partition_{i}" for i, column in enumerate(partition)
    ]
    samples = sa.select(
        *(column.label(name) for column, name in zip(partition, names, strict=True)),
        bucket_number(ts, window).label("bucket"),
        ts.label("ts"),
        value.label("value"),
    ).where(*where, ts >= window.start_us, ts < window.end_us)
    if dialect == "sqlite":
        # A LIMIT keeps SQLite from merging the subquery into the grouping: the value is
        # then taken out once per sample and GROUP BY's temporary B-tree holds (bucket,
        # ts, value) instead of whole rows with their JSON text, which halved the logbook's
        # aggregated read (docs/benchmarks.md, "Logbook reads"). -1 is no limit.
        samples = samples.limit(-1)
    rows = samples.subquery("samples")
    keys = [rows.c[name] for name in names]
    statement = (
        sa.select(
            *keys,
            rows.c.bucket,
            sa.func.min(rows.c.ts).label("first_ts"),
            sa.func.max(rows.c.ts).label("last_ts"),
            aggregate(function, rows.c.value, dialect).label("value"),
        )
        .group_by(*keys, rows.c.bucket)
        .order_by(*keys, rows.c.bucket)
    )
    if limit is not None:
        statement = statement.limit(limit)
    return statement
