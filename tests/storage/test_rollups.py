"""Rollups answer exactly what the raw read answers, on SQLite and PostgreSQL.

Random records (numbers, whole numbers, strings, booleans, missing keys), late arrivals
into folded minutes, repeats, retention and device deletion; every aggregation, both
numeric field types, ranges and intervals aligned on minutes and not. The reference is the
raw read itself (rollups switched off), plus values computed here in Python. Values are
multiples of 1/8 so that every sum is exact in any order: the comparison is ``==``.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence
from typing import Any

import orjson
import pytest
import sqlalchemy as sa
from sqlalchemy import event

from server.storage import devices, input_data, logbook, orgs, retention, rollups, telemetry
from server.storage.db import Database
from server.storage.input_data import NewPoint
from server.storage.logbook import Bucket, FieldType
from server.storage.models import (
    Device,
    Input,
    InputDirtyHour,
    InputRollup,
    TelemetryDirtyMinute,
    TelemetryRollup,
    User,
)
from server.storage.series import Aggregation, Window
from server.telemetry.rollups import fold_all

MINUTE = 60_000_000
HOUR = 60 * MINUTE
DAY_START = 1_577_836_800_000_000  # 2020-01-01T00:00:00Z
FIELD = "obd.bat.voltage"


def make_device(database: Database, owner: User, name: str = "car") -> Device:
    with database.session() as s:
        return devices.create_device(s, owner.id, name, "device-credentials")[0]


def value(rng: random.Random) -> Any:
    """A voltage as devices send it: mostly numbers, sometimes something else."""
    roll = rng.random()
    if roll < 0.55:
        return rng.randint(-800, 800) / 8  # a float with an exact binary fraction
    if roll < 0.8:
        return rng.randint(-100, 100)
    return rng.choice(["13.1", True, None, {"v": 1}, [1]])


def records(rng: random.Random, count: int, start: int, span: int) -> list[tuple[str, int, str]]:
    rows = []
    for _ in range(count):
        fields: dict[str, Any] = {"state": "ok"}
        if rng.random() < 0.9:
            fields["voltage"] = value(rng)
        if rng.random() < 0.5:
            fields["level"] = rng.randint(0, 100)
        rows.append(("obd.bat", start + rng.randrange(span), orjson.dumps(fields).decode()))
    return rows


def store(database: Database, device: Device, rows: Sequence[tuple[str, int, str]]) -> None:
    with database.session() as s:
        telemetry.store_records(s, device.id, rows)


def fold(database: Database) -> None:
    while database.call(lambda s: rollups.fold_records(s, limit=50, quiet_us=0)):
        pass


def read(
    database: Database,
    device: Device,
    field_type: FieldType,
    function: Aggregation,
    window: Window,
    limit: int = 100_000,
) -> list[Bucket]:
    splits = logbook.field_splits(FIELD)
    assert splits is not None
    with database.session() as s:
        return logbook.read_aggregated(s, device.id, splits, field_type, function, window, limit)


@pytest.fixture
def raw_only(monkeypatch: pytest.MonkeyPatch) -> Any:
    """A switch: within ``with raw_only():`` reads ignore rollups (the raw read)."""

    class Switch:
        def __enter__(self) -> None:
            monkeypatch.setattr(rollups, "record_spans", lambda window: None)

        def __exit__(self, *_: object) -> None:
            monkeypatch.undo()

    return Switch


def windows(rng: random.Random, start: int, span: int) -> list[Window]:
    """Aligned windows (rollups answer), ragged ones (a mix) and cutting ones (raw)."""
    chosen = [
        Window(start, start + span, MINUTE),
        Window(start, start + span, 5 * MINUTE),
        Window(start, start + span, span),  # one bucket
        Window(start - HOUR, start + span + HOUR, HOUR),
        Window(start + 7 * MINUTE, start + span - 3 * MINUTE, 7 * MINUTE),
        Window(start + 123_456_789, start + span - 987_654, span),  # ragged, one bucket
        Window(start + 1_500_000, start + span, MINUTE),  # start cuts minutes
        Window(start, start + span, 90_000_000),  # width cuts minutes
        Window(start, start + span - 1, 30_000_000),
    ]
    for _ in range(1):
        a = start + rng.randrange(span)
        b = a + 1 + rng.randrange(span)
        chosen.append(Window(a, b, rng.choice([MINUTE, 3 * MINUTE, HOUR, b - a, 45_000_000])))
    return chosen


def assert_reads_match(
    database: Database, device: Device, raw_only: Any, window_list: Sequence[Window]
) -> int:
    """Every aggregation of both numeric types over every window equals the raw read;
    returns how many reads rollups could serve."""
    served = 0
    for window in window_list:
        served += rollups.record_spans(window) is not None
        for field_type in (FieldType.FLOAT, FieldType.LONG):
            for function in Aggregation:
                got = read(database, device, field_type, function, window)
                with raw_only():
                    want = read(database, device, field_type, function, window)
                assert got == want, (window, field_type, function)
                assert [type(b.value) for b in got] == [type(b.value) for b in want]
    return served


@pytest.mark.parametrize("seed", [1])
def test_rollups_answer_exactly_what_the_raw_read_answers(
    database: Database, ada: User, raw_only: Any, seed: int
) -> None:
    rng = random.Random(seed)
    car = make_device(database, ada)
    span = 3 * HOUR
    first = records(rng, 800, DAY_START, span)
    store(database, car, first)
    fold(database)
    with database.session() as s:
        assert (s.scalar(sa.select(sa.func.count()).select_from(TelemetryRollup)) or 0) > 0
        assert s.scalar(sa.select(sa.func.count()).select_from(TelemetryDirtyMinute)) == 0
    window_list = windows(rng, DAY_START, span)
    assert assert_reads_match(database, car, raw_only, window_list) >= 6

    # Late arrivals into folded minutes, repeats of stored records with other values
    # (ignored), and records outside the range read so far: reads are exact before the
    # fold (the touched minutes are read raw) and after it.
    late = records(rng, 300, DAY_START, span)
    repeats = [(t, ts, '{"voltage": 1000000}') for t, ts, _ in rng.sample(first, 100)]
    store(database, car, late + repeats)
    assert_reads_match(database, car, raw_only, window_list)
    fold(database)
    assert_reads_match(database, car, raw_only, window_list)


def test_the_answer_is_the_raw_answer_computed_here(database: Database, ada: User) -> None:
    car = make_device(database, ada)
    rows = [
        ("obd.bat", DAY_START + i * 7_000_000, f'{{"voltage": {i % 13}.5}}') for i in range(600)
    ]
    store(database, car, rows)
    fold(database)
    window = Window(DAY_START, DAY_START + HOUR, 10 * MINUTE)
    got = read(database, car, FieldType.FLOAT, Aggregation.AVG, window)
    assert len(got) == 6
    for n, bucket in enumerate(got):
        members = [
            (ts, i % 13 + 0.5)
            for i, (_, ts, _) in enumerate(rows)
            if window.bucket_start(n) <= ts < window.bucket_start(n + 1)
        ]
        assert bucket == Bucket(
            members[0][0], members[-1][0], sum(v for _, v in members) / len(members)
        )
    longs = read(
        database, car, FieldType.LONG, Aggregation.SUM, Window(DAY_START, DAY_START + HOUR, HOUR)
    )
    assert longs[0].value == sum(i % 13 for i in range(600) if i * 7 < 3600)
    assert isinstance(longs[0].value, int)


def test_a_read_of_whole_minutes_uses_the_rollups(database: Database, ada: User) -> None:
    """Rollups are what answers: a rollup changed behind the fold's back shows."""
    car = make_device(database, ada)
    store(database, car, [("obd.bat", DAY_START + 1, '{"voltage": 2}')])
    fold(database)
    with database.session() as s:
        s.execute(sa.update(TelemetryRollup).values(max_float=99.0))
    window = Window(DAY_START, DAY_START + HOUR, HOUR)
    assert read(database, car, FieldType.FLOAT, Aggregation.MAX, window)[0].value == 99.0
    ragged = Window(DAY_START, DAY_START + 30_000_000, HOUR)  # no whole minute: raw
    assert read(database, car, FieldType.FLOAT, Aggregation.MAX, ragged)[0].value == 2.0


def test_a_write_during_a_fold_keeps_its_minute_dirty(database: Database, ada: User) -> None:
    """A record committed between the fold's read of the marks and its end is not lost:
    the fold leaves the mark it did not see last, and the next pass folds the record."""
    car = make_device(database, ada)
    store(database, car, [("obd.bat", DAY_START + 1, '{"voltage": 1}')])
    other = Database(database.url)
    fired: list[bool] = []

    def meanwhile(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        if not fired and "FROM telemetry_dirty_minutes" in statement and "SELECT" in statement:
            fired.append(True)
            store(other, car, [("obd.bat", DAY_START + 2, '{"voltage": 5}')])

    event.listen(database.engine, "after_cursor_execute", meanwhile)
    try:
        database.call(lambda s: rollups.fold_records(s, quiet_us=0))
    finally:
        event.remove(database.engine, "after_cursor_execute", meanwhile)
        other.dispose()
    assert fired
    window = Window(DAY_START, DAY_START + HOUR, HOUR)
    assert read(database, car, FieldType.FLOAT, Aggregation.SUM, window)[0].value == 6.0
    with database.session() as s:
        assert s.scalar(sa.select(sa.func.count()).select_from(TelemetryDirtyMinute)) == 1
    fold(database)
    assert read(database, car, FieldType.FLOAT, Aggregation.SUM, window)[0].value == 6.0


def test_a_minute_being_written_waits_until_it_is_quiet(database: Database, ada: User) -> None:
    car = make_device(database, ada)
    store(database, car, [("obd.bat", DAY_START + 1, '{"voltage": 1}')])
    assert database.call(lambda s: rollups.fold_records(s, quiet_us=60_000_000)) == 0
    assert database.call(lambda s: rollups.fold_records(s, quiet_us=0)) == 1


def test_repeats_alone_mark_nothing(database: Database, ada: User) -> None:
    car = make_device(database, ada)
    row = [("obd.bat", DAY_START + 1, '{"voltage": 1}')]
    store(database, car, row)
    fold(database)
    store(database, car, row)
    with database.session() as s:
        assert s.scalar(sa.select(sa.func.count()).select_from(TelemetryDirtyMinute)) == 0


def test_retention_keeps_rollups_exact(database: Database, ada: User, raw_only: Any) -> None:
    rng = random.Random(7)
    car = make_device(database, ada)
    store(database, car, records(rng, 800, DAY_START, 2 * HOUR))
    fold(database)
    cutoff = DAY_START + 37 * MINUTE + 12_345_678  # inside a minute
    with database.session() as s:
        while retention.delete_records(s, car.id, "obd.bat", cutoff, 100) == 100:
            pass
    window_list = [
        Window(DAY_START, DAY_START + 2 * HOUR, MINUTE),
        Window(DAY_START, DAY_START + 2 * HOUR, 2 * HOUR),
    ]
    assert_reads_match(database, car, raw_only, window_list)
    fold(database)
    assert_reads_match(database, car, raw_only, window_list)
    with database.session() as s:
        oldest = s.scalar(sa.select(sa.func.min(TelemetryRollup.first_ts)))
        assert oldest is not None
        assert oldest >= cutoff
    with database.session() as s:  # every record gone: no rollup left
        retention.delete_records(s, car.id, "obd.bat", DAY_START + 3 * HOUR, 100_000)
    fold(database)
    with database.session() as s:
        assert s.scalar(sa.select(sa.func.count()).select_from(TelemetryRollup)) == 0


def test_deleting_a_device_deletes_its_rollups(database: Database, ada: User) -> None:
    car = make_device(database, ada)
    store(database, car, [("obd.bat", DAY_START + 1, '{"voltage": 1}')])
    store(database, car, [("obd.bat", DAY_START + MINUTE, '{"voltage": 1}')])
    database.call(lambda s: rollups.fold_records(s, limit=1, quiet_us=0))
    with database.session() as s:
        devices.delete_device(s, ada.id, "car")
    with database.session() as s:
        for table in (TelemetryRollup, TelemetryDirtyMinute):
            assert s.scalar(sa.select(sa.func.count()).select_from(table)) == 0


def test_keys_too_long_to_read_are_not_rolled_up(database: Database, ada: User) -> None:
    car = make_device(database, ada)
    fields = orjson.dumps({"k" * 300: 1, "voltage": 2}).decode()
    store(database, car, [("obd.bat", DAY_START + 1, fields)])
    fold(database)
    with database.session() as s:
        assert list(s.scalars(sa.select(TelemetryRollup.key))) == ["voltage"]
    for statement in rollups._RECOMPUTE_MINUTE.values():  # the limit, written in the SQL
        assert f"length(j.key) <= {rollups.MAX_KEY_LENGTH} " in statement.text


def test_the_fold_task_folds_everything(database: Database, ada: User) -> None:
    car = make_device(database, ada)
    rows = [("obd.bat", DAY_START + i * 1_000_000, '{"voltage": 1}') for i in range(3600)]
    store(database, car, rows)
    folded = asyncio.run(fold_all(database, limit=7, quiet_us=0, pause_s=0))
    assert folded == 60
    with database.session() as s:
        assert s.scalar(sa.select(sa.func.count()).select_from(TelemetryDirtyMinute)) == 0
        assert s.scalar(sa.select(sa.func.sum(TelemetryRollup.count))) == 3600


# --- Datacooee --------------------------------------------------------------------------


def make_input(database: Database) -> str:
    with database.session() as s:
        org, _ = orgs.create_org(s, "acme")
        return orgs.create_input(s, org.id, "temperature").id


def stats(
    database: Database, ids: list[str], window: input_data.Window
) -> dict[str, dict[str, float | None]]:
    with database.session() as s:
        return input_data.statistics(s, ids, window, ("min", "max", "avg"))


def raw_stats(
    database: Database, ids: list[str], window: input_data.Window, monkeypatch: pytest.MonkeyPatch
) -> dict[str, dict[str, float | None]]:
    with monkeypatch.context() as patch:
        patch.setattr(rollups, "input_spans", lambda start, end: None)
        return stats(database, ids, window)


def test_datacooee_statistics_match_the_raw_read(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = random.Random(11)
    sensor = make_input(database)
    with database.session() as s:
        other = orgs.create_input(s, orgs.create_org(s, "b")[0].id, "t").id
    start = DAY_START
    stamps = rng.sample(range(0, 30 * HOUR, 1_000_000), 2000)
    for input_id in (sensor, other):
        with database.session() as s:
            input_data.insert_points(
                s,
                input_id,
                [
                    NewPoint(
                        start + ts, "x", None if rng.random() < 0.1 else rng.randint(-80, 80) / 8
                    )
                    for ts in stamps
                ],
            )
    while database.call(lambda s: rollups.fold_input_data(s, limit=9, quiet_us=0)):
        pass
    with database.session() as s:
        assert (s.scalar(sa.select(sa.func.count()).select_from(InputRollup)) or 0) > 0
    cases = [
        input_data.Window(),
        input_data.Window(start, None),
        input_data.Window(None, start + 5 * HOUR),
        input_data.Window(start + HOUR, start + 5 * HOUR - 1),
        input_data.Window(start + 1234, start + 29 * HOUR + 999),
        input_data.Window(start + 10, start + 20),
        input_data.Window(start + 40 * HOUR, None),
    ]

    def check() -> None:
        for window in cases:
            got = stats(database, [sensor, other], window)
            assert got == raw_stats(database, [sensor, other], window, monkeypatch), window

    check()
    with database.session() as s:  # late values, a repeat, a single upload
        input_data.insert_points(s, sensor, [NewPoint(start + 2 * HOUR + 5, "1", 1000.0)])
        input_data.insert_points(s, sensor, [NewPoint(start + stamps[0], "1", -1000.0)])
        org_id = s.scalar(sa.select(Input.org_id).where(Input.id == sensor))
        assert org_id is not None
        input_data.store_point(s, org_id, sensor, NewPoint(start + 3 * HOUR + 7, "2", -999.0))
    check()
    assert stats(database, [sensor], input_data.Window())[sensor]["max"] == 1000.0
    while database.call(lambda s: rollups.fold_input_data(s, quiet_us=0)):
        pass
    check()
    with database.session() as s:
        while retention.delete_input_data(s, sensor, start + 7 * HOUR + 3, 100) == 100:
            pass
    check()
    while database.call(lambda s: rollups.fold_input_data(s, quiet_us=0)):
        pass
    check()
    with database.session() as s:
        assert s.scalar(sa.select(sa.func.count()).select_from(InputDirtyHour)) == 0
