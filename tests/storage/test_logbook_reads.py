"""Logbook reads and the bucket rule, on SQLite and PostgreSQL: results checked against
values computed here in Python, field resolution, and the plans (the primary key, no scan)."""

from __future__ import annotations

import random
import statistics
from collections.abc import Callable, Sequence
from typing import Any

import orjson
import pytest
import sqlalchemy as sa

from server.storage import devices, logbook, orgs, telemetry
from server.storage.db import Database
from server.storage.logbook import Bucket, FieldType, Sample, field_splits
from server.storage.models import Device, InputData, User
from server.storage.series import Aggregation, Window, aggregated_select

MINUTE = 60_000_000
FUNCTIONS: dict[Aggregation, Callable[[list[float]], float]] = {
    Aggregation.AVG: statistics.fmean,
    Aggregation.MIN: min,
    Aggregation.MAX: max,
    Aggregation.SUM: sum,
    Aggregation.COUNT: len,
}


def make_device(database: Database, owner: User, device_id: str) -> Device:
    with database.session() as s:
        device, _ = devices.create_device(s, owner.id, device_id, "device-credentials")
        return device


def store(database: Database, device: Device, rows: Sequence[tuple[str, int, Any]]) -> None:
    with database.session() as s:
        telemetry.store_records(
            s, device.id, [(t, ts, orjson.dumps(fields).decode()) for t, ts, fields in rows]
        )


def expected(
    points: Sequence[tuple[int, float]], window: Window, function: Aggregation
) -> list[Bucket]:
    groups: dict[int, list[tuple[int, float]]] = {}
    for ts, value in points:
        if window.start_us <= ts < window.end_us:
            groups.setdefault((ts - window.start_us) // window.width_us, []).append((ts, value))
    return [
        Bucket(min(t for t, _ in g), max(t for t, _ in g), FUNCTIONS[function]([v for _, v in g]))
        for _, g in sorted(groups.items())
    ]


def assert_same(got: list[Bucket], want: list[Bucket]) -> None:
    assert [(b.first_ts, b.last_ts) for b in got] == [(b.first_ts, b.last_ts) for b in want]
    for g, w in zip(got, want, strict=True):
        assert g.value == pytest.approx(w.value, rel=1e-9, abs=1e-9)


# --- field names ---------------------------------------------------------------------------


def test_field_splits_longest_record_type_first() -> None:
    assert field_splits("obd.bat.voltage") == [("obd.bat", "voltage"), ("obd", "bat.voltage")]
    assert field_splits("track.pos.loc") == [("track.pos", "loc"), ("track", "pos.loc")]
    assert field_splits("rpm.value") == [("rpm", "value")]


@pytest.mark.parametrize("field", ["", "voltage", ".a", "a.", "a..b", 'a."b', "a.\x00", "a." * 200])
def test_field_splits_refuses_names_that_name_nothing(field: str) -> None:
    assert field_splits(field) is None


def test_the_longest_record_type_the_device_has_wins(database: Database, ada: User) -> None:
    both = make_device(database, ada, "both")
    short = make_device(database, ada, "short")
    store(database, both, [("obd.bat", 10, {"voltage": 2}), ("obd", 10, {"bat.voltage": 1})])
    store(database, short, [("obd", 10, {"bat.voltage": 1, "voltage": 3})])
    splits = field_splits("obd.bat.voltage")
    assert splits is not None
    with database.session() as s:
        assert logbook.read_raw(s, both.id, splits, FieldType.FLOAT, 0, 100, 10) == [
            Sample(10, 2.0)
        ]
        assert logbook.read_raw(s, short.id, splits, FieldType.FLOAT, 0, 100, 10) == [
            Sample(10, 1.0)
        ]
        window = Window(0, 100, 50)
        got = logbook.read_aggregated(
            s, short.id, splits, FieldType.FLOAT, Aggregation.SUM, window, 10
        )
        assert got == [Bucket(10, 10, 1.0)]


# --- values --------------------------------------------------------------------------------


def test_only_numbers_are_numeric_values(database: Database, ada: User) -> None:
    car = make_device(database, ada, "car")
    values: list[Any] = [1, 2.5, "3", True, False, None, [4], {"v": 5}, -2.7, 1e300]
    store(database, car, [("obd.bat", i, {"voltage": v}) for i, v in enumerate(values)])
    store(database, car, [("obd.bat", 100, {"other": 1})])
    splits = field_splits("obd.bat.voltage")
    assert splits is not None
    with database.session() as s:
        floats = logbook.read_raw(s, car.id, splits, FieldType.FLOAT, 0, 1000, 100)
        longs = logbook.read_raw(s, car.id, splits, FieldType.LONG, 0, 1000, 100)
        strings = logbook.read_raw(s, car.id, splits, FieldType.STRING, 0, 1000, 100)
    assert floats == [Sample(0, 1.0), Sample(1, 2.5), Sample(8, -2.7), Sample(9, 1e300)]
    # Truncated toward zero on both databases; a huge float saturates or is kept whole.
    assert [s.value for s in longs[:3]] == [1, 2, -2]
    assert all(isinstance(s.value, int) for s in longs)
    assert strings == [Sample(2, "3")]


def test_positions_need_numeric_lat_and_lon(database: Database, ada: User) -> None:
    car = make_device(database, ada, "car")
    locs: list[Any] = [
        {"lat": 57.04699, "lon": 9.93909},
        {"lat": "57", "lon": 9},
        {"lat": 1},
        "57,9",
        [9, 57],
        {"lat": -1, "lon": 2},
    ]
    store(database, car, [("track.pos", i, {"loc": loc}) for i, loc in enumerate(locs)])
    splits = field_splits("track.pos.loc")
    assert splits is not None
    with database.session() as s:
        points = logbook.read_points(s, car.id, splits, 0, 100, 100)
    assert [tuple(p) for p in points] == [(0, 57.04699, 9.93909), (5, -1.0, 2.0)]


def test_long_sums_do_not_overflow(database: Database, ada: User) -> None:
    car = make_device(database, ada, "car")
    store(database, car, [("obd.bat", i, {"level": 9_000_000_000_000_000_000}) for i in range(3)])
    splits = field_splits("obd.bat.level")
    assert splits is not None
    with database.session() as s:
        got = logbook.read_aggregated(
            s, car.id, splits, FieldType.LONG, Aggregation.SUM, Window(0, 10, 10), 10
        )
    assert got[0].value == pytest.approx(2.7e19, rel=1e-9)


# --- buckets against Python ----------------------------------------------------------------


@pytest.mark.parametrize("function", list(Aggregation))
def test_buckets_match_python(database: Database, ada: User, function: Aggregation) -> None:
    rng = random.Random(function.value)
    car = make_device(database, ada, "car")
    other = make_device(database, ada, "other")
    # Times before 1970 too (negative µs): the floor must stay a floor.
    start = -30 * MINUTE
    window = Window(start, start + 60 * MINUTE, 7 * MINUTE)
    times = sorted(
        {rng.randrange(start - 5 * MINUTE, window.end_us + 5 * MINUTE) for _ in range(300)}
    )
    times += [start, start + 7 * MINUTE, window.end_us - 1, window.end_us]  # the edges
    points = [(t, rng.uniform(-50, 50)) for t in sorted(set(times))]
    store(database, car, [("obd.bat", t, {"voltage": v}) for t, v in points])
    store(database, other, [("obd.bat", t, {"voltage": 1000.0}) for t, _ in points])
    splits = field_splits("obd.bat.voltage")
    assert splits is not None
    with database.session() as s:
        got = logbook.read_aggregated(s, car.id, splits, FieldType.FLOAT, function, window, 1000)
        capped = logbook.read_aggregated(s, car.id, splits, FieldType.FLOAT, function, window, 3)
    want = expected(points, window, function)
    assert len(want) == window.bucket_count == 9  # the last bucket is short
    assert_same(got, want)
    assert_same(capped, want[:3])
    assert got[0].first_ts == start  # a sample at the window's start is in it
    assert got[1].first_ts == start + 7 * MINUTE  # one on a boundary opens its bucket
    assert got[-1].last_ts == window.end_us - 1  # one at the end is out


def test_empty_buckets_are_absent(database: Database, ada: User) -> None:
    car = make_device(database, ada, "car")
    store(database, car, [("obd.bat", t, {"voltage": 1}) for t in (0, 1, 5 * MINUTE, 9 * MINUTE)])
    splits = field_splits("obd.bat.voltage")
    assert splits is not None
    with database.session() as s:
        got = logbook.read_aggregated(
            s,
            car.id,
            splits,
            FieldType.FLOAT,
            Aggregation.COUNT,
            Window(0, 10 * MINUTE, MINUTE),
            100,
        )
    assert got == [
        Bucket(0, 1, 2),
        Bucket(5 * MINUTE, 5 * MINUTE, 1),
        Bucket(9 * MINUTE, 9 * MINUTE, 1),
    ]


def test_the_rule_serves_input_data_too(database: Database) -> None:
    """The bucket rule on another series table: Datacooee values, several inputs at once."""
    with database.session() as s:
        org, _ = orgs.create_org(s, "acme")
        inputs = [orgs.create_input(s, org.id, name).id for name in ("a", "b")]
        rows = [
            {"input_id": input_id, "ts": t, "value": str(v), "number": v}
            for input_id in inputs
            for t, v in [(0, 1.0), (10, 3.0), (25, 5.0)]
        ]
        s.execute(sa.insert(InputData), rows)
    table = InputData.__table__
    window = Window(0, 30, 20)
    with database.session() as s:
        statement = aggregated_select(
            ts=table.c.ts,
            value=table.c.number,
            where=[table.c.input_id.in_(inputs), table.c.number.is_not(None)],
            function=Aggregation.AVG,
            window=window,
            dialect=s.connection().dialect.name,
            partition=[table.c.input_id],
        )
        got = [tuple(row) for row in s.execute(statement)]
    assert got == [
        (i, b, f, last, v)
        for i in sorted(inputs)
        for b, f, last, v in [(0, 0, 10, 2.0), (1, 25, 25, 5.0)]
    ]


# --- plans ---------------------------------------------------------------------------------


def _plan(database: Database, statement_of: Callable[[Any], Any]) -> str:
    with database.session() as s:
        return logbook.explain(s, statement_of(s))


def _fill_for_plans(database: Database, ada: User) -> Device:
    """Enough rows of several devices and types that PostgreSQL's planner prefers the index
    for one device's hour (on a nearly empty table a sequential scan is cheaper)."""
    cars = [make_device(database, ada, f"car{i}") for i in range(4)]
    for car in cars:
        store(
            database,
            car,
            [
                (t, ts * 1_000_000, {"voltage": 12.5})
                for t in ("obd.bat", "obd.rpm")
                for ts in range(5000)
            ],
        )
    with database.engine.connect() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(sa.text("ANALYZE telemetry_records"))
        else:
            connection.execute(sa.text("ANALYZE"))
        connection.commit()
    return cars[0]


def test_aggregation_and_raw_reads_use_the_primary_key(database: Database, ada: User) -> None:
    car = _fill_for_plans(database, ada)
    splits = field_splits("obd.bat.voltage")
    assert splits is not None
    window = Window(100_000_000, 400_000_000, 60_000_000)

    def aggregated(s: Any) -> Any:
        extraction, where, dialect = logbook._field(s, car.id, splits, FieldType.FLOAT)
        return aggregated_select(
            ts=logbook._TABLE.c.ts,
            value=extraction.value,
            where=where,
            function=Aggregation.AVG,
            window=window,
            dialect=dialect,
            limit=100,
        )

    def raw(s: Any) -> Any:
        return logbook._raw_select(s, car.id, splits, FieldType.FLOAT, 0, 400_000_000, 100)

    for statement_of in (aggregated, raw):
        plan = _plan(database, statement_of)
        if database.is_sqlite:
            assert "SCAN telemetry_records" not in plan, plan
            search = "USING PRIMARY KEY (device_pk=? AND record_type=? AND ts>? AND ts<?)"
            assert f"SEARCH telemetry_records {search}" in plan, plan
        else:
            assert "Seq Scan" not in plan, plan
            assert "pk_telemetry_records" in plan, plan
            assert "(ts >= " in plan, plan
            assert "(ts < " in plan, plan
        if statement_of is raw and database.is_sqlite:
            assert "TEMP B-TREE" not in plan, plan  # rows come in index order
