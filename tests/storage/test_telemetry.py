"""Device records: validation of pushed batches, and exactly-once storage on both databases."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
import sqlalchemy as sa

from server.storage import devices, telemetry
from server.storage.db import Database
from server.storage.models import Device, TelemetryRecord, User
from server.storage.telemetry import StoredCounts, split_batch, store_records

# 2021-02-24T09:03:09.310362Z, the seed's OBD voltage record.
SEED_TS = 1614157389_310362


def seed_batch() -> list[dict[str, Any]]:
    """The example records of the AutoPi data guide, one of each shape."""
    return [
        {
            "utc": "06:02:24",
            "cog": 140.22,
            "nsat": 9,
            "alt": 34,
            "@ts": "2020-09-03T12:38:24.374314Z",
            "@t": "track.pos",
            "sog": 0,
            "loc": {"lat": 57.02241, "lon": 9.89919},
        },
        {
            "voltage": 15.4,
            "@ts": "2021-02-24T09:03:09.310362Z",
            "state": "overcharging",
            "level": 100,
            "@t": "obd.bat",
        },
        {"sent": 2695, "@t": "ec2x.data_usage", "recv": 4742, "@ts": "2021-02-24T09:03:02.570313Z"},
        {
            "@tag": "system/minion/online",
            "@t": "event.system.minion",
            "@ts": "2021-02-24T09:02:12.192479Z",
        },
    ]


def make_device(database: Database, owner: User, device_id: str) -> Device:
    with database.session() as s:
        device, _ = devices.create_device(s, owner.id, device_id, "device-credentials")
        return device


@pytest.fixture
def car(database: Database, ada: User) -> Device:
    return make_device(database, ada, "car")


def store(database: Database, device: Device, batch: list[Any]) -> StoredCounts:
    split = split_batch(batch)
    with database.session() as s:
        return store_records(s, device.id, split.usable)


def stored(database: Database) -> list[tuple[int, str, int, dict[str, Any]]]:
    with database.session() as s:
        rows = s.execute(
            sa.select(
                TelemetryRecord.device_pk,
                TelemetryRecord.record_type,
                TelemetryRecord.ts,
                TelemetryRecord.fields,
            ).order_by(TelemetryRecord.device_pk, TelemetryRecord.record_type, TelemetryRecord.ts)
        ).all()
    return [(d, t, ts, orjson.loads(f)) for d, t, ts, f in rows]


def test_a_batch_is_stored_once_with_its_fields(database: Database, car: Device) -> None:
    assert store(database, car, seed_batch()) == StoredCounts(new=4, repeats=0)
    rows = stored(database)
    assert [(t, ts) for _, t, ts, _ in rows] == [
        ("ec2x.data_usage", 1614157382_570313),
        ("event.system.minion", 1614157332_192479),
        ("obd.bat", SEED_TS),
        ("track.pos", 1599136704_374314),
    ]
    assert all(device_pk == car.id for device_pk, *_ in rows)
    assert rows[2][3] == {"voltage": 15.4, "state": "overcharging", "level": 100}
    assert rows[3][3]["loc"] == {"lat": 57.02241, "lon": 9.89919}


def test_the_same_batch_again_stores_nothing_and_reports_repeats(
    database: Database, car: Device
) -> None:
    store(database, car, seed_batch())
    before = stored(database)
    changed = seed_batch()
    changed[1]["voltage"] = 1.0  # a repeat keeps the first copy, whatever it carries now
    assert store(database, car, changed) == StoredCounts(new=0, repeats=4)
    assert stored(database) == before


def test_a_partly_repeated_batch_stores_only_the_new_records(
    database: Database, car: Device
) -> None:
    store(database, car, seed_batch()[:2])
    fresh = {"@t": "obd.bat", "@ts": "2021-02-24T09:04:09Z", "voltage": 12.1}
    twice = {"@t": "obd.rpm", "@ts": "2021-02-24T09:04:09Z", "value": 800}
    counts = store(database, car, [*seed_batch(), fresh, twice, dict(twice)])
    assert counts == StoredCounts(new=4, repeats=3)
    assert len(stored(database)) == 6


def test_a_mixed_batch_keeps_the_good_and_reports_the_bad(database: Database, car: Device) -> None:
    good = seed_batch()
    bad: list[tuple[Any, str]] = [
        ([1, 2], "not a JSON object"),
        ("text", "not a JSON object"),
        (None, "not a JSON object"),
        ({"@ts": "2021-02-24T09:03:09Z", "v": 1}, "missing @t"),
        ({"@t": "", "@ts": "2021-02-24T09:03:09Z"}, "bad @t"),
        ({"@t": 7, "@ts": "2021-02-24T09:03:09Z"}, "bad @t"),
        ({"@t": "a\x00b", "@ts": "2021-02-24T09:03:09Z"}, "bad @t"),
        ({"@t": "x" * 129, "@ts": "2021-02-24T09:03:09Z"}, "bad @t"),
        ({"@t": "obd.bat", "voltage": 1}, "missing @ts"),
        ({"@t": "obd.bat", "@ts": "yesterday"}, "bad @ts"),
        ({"@t": "obd.bat", "@ts": 1614157389}, "bad @ts"),
        ({"@t": "obd.bat", "@ts": None}, "bad @ts"),
        ({"@t": "obd.bat", "@ts": "2021-02-24"}, "bad @ts"),
        ({"@t": "obd.bat", "@ts": "2021-02-30T09:03:09Z"}, "bad @ts"),
        ({"@t": "obd.bat", "@ts": "2021-02-24T25:03:09Z"}, "bad @ts"),
        ({"@t": "obd.bat", "@ts": "2021-02-24T09:03:09+25:00"}, "bad @ts"),
        ({"@t": "obd.bat", "@ts": "2021-02-24T09:03:09Z", "big": 2**70}, "not representable"),
    ]
    batch: list[Any] = [good[0], *(record for record, _ in bad[:8]), good[1]]
    batch += [*(record for record, _ in bad[8:]), *good[2:]]
    split = split_batch(batch)
    assert len(split.usable) == 4
    assert [r.position for r in split.rejected] == [*range(1, 9), *range(10, 19)]
    for rejected, (record, reason) in zip(split.rejected, bad, strict=True):
        assert reason in rejected.reason
        assert rejected.record is record
    with database.session() as s:
        assert store_records(s, car.id, split.usable) == StoredCounts(new=4, repeats=0)
    assert {t for _, t, _, _ in stored(database)} == {r["@t"] for r in good}


@pytest.mark.parametrize(
    "spelling",
    [
        "2021-02-24T09:03:09.310362Z",
        "2021-02-24T09:03:09.310362z",
        "2021-02-24T09:03:09.310362+00:00",
        "2021-02-24T10:03:09.310362+01:00",
        "2021-02-24T11:03:09.310362+0200",
        "2021-02-24T04:33:09.310362-04:30",
        "2021-02-24T09:03:09.310362",
        "2021-02-24 09:03:09.310362Z",
        "2021-02-24t09:03:09.310362z",
        "2021-02-24T09:03:09.3103621234Z",
    ],
)
def test_spellings_of_one_instant_are_one_key(spelling: str) -> None:
    assert telemetry.parse_timestamp(spelling) == SEED_TS


@pytest.mark.parametrize(
    ("spelling", "micros"),
    [
        ("2024-01-01T12:00:00Z", 1704110400_000000),
        ("2024-01-01T12:00:00.5Z", 1704110400_500000),
        ("2024-01-01T12:00:00.000001+00:00", 1704110400_000001),
        ("1969-12-31T23:59:59.999999Z", -1),
    ],
)
def test_timestamps_are_epoch_microseconds(spelling: str, micros: int) -> None:
    assert telemetry.parse_timestamp(spelling) == micros


def test_several_spellings_in_one_batch_store_one_record(database: Database, car: Device) -> None:
    spellings = ["2021-02-24T09:03:09.310362Z", "2021-02-24T10:03:09.310362+01:00"]
    batch = [{"@t": "obd.bat", "@ts": ts, "voltage": 15.4} for ts in spellings]
    assert store(database, car, batch) == StoredCounts(new=1, repeats=1)
    assert [(t, ts) for _, t, ts, _ in stored(database)] == [("obd.bat", SEED_TS)]


def test_two_devices_with_the_same_type_and_time_are_distinct(
    database: Database, ada: User, bob: User, car: Device
) -> None:
    van = make_device(database, ada, "van")
    bike = make_device(database, bob, "car")  # same device id, another owner
    for device in (car, van, bike):
        assert store(database, device, seed_batch()[1:2]) == StoredCounts(new=1, repeats=0)
    rows = stored(database)
    assert sorted(d for d, *_ in rows) == sorted([car.id, van.id, bike.id])
    assert {(t, ts) for _, t, ts, _ in rows} == {("obd.bat", SEED_TS)}


def test_a_large_batch_is_stored_in_one_call(database: Database, car: Device) -> None:
    start = datetime(2024, 1, 1, tzinfo=UTC)
    batch = [
        {
            "@t": "obd.bat",
            "@ts": (start + timedelta(milliseconds=i)).isoformat().replace("+00:00", "Z"),
            "voltage": 12 + i / 10_000,
        }
        for i in range(5_000)
    ]
    batch += [{"@t": "track.pos", "@ts": record["@ts"], "sog": 0} for record in batch[:5_000]]
    assert len(batch) == 10_000
    assert store(database, car, batch) == StoredCounts(new=10_000, repeats=0)
    assert store(database, car, batch) == StoredCounts(new=0, repeats=10_000)
    with database.session() as s:
        count = s.scalar(sa.select(sa.func.count()).select_from(TelemetryRecord))
        last = s.scalar(sa.select(sa.func.max(TelemetryRecord.ts)))
    assert count == 10_000
    assert last == 1704067200_000000 + 4_999_000


def test_an_empty_batch_stores_nothing(database: Database, car: Device) -> None:
    assert store(database, car, []) == StoredCounts(new=0, repeats=0)
    assert stored(database) == []


def test_a_device_deleted_takes_its_records(database: Database, ada: User, car: Device) -> None:
    store(database, car, seed_batch())
    with database.session() as s:
        devices.delete_device(s, ada.id, "car")
    assert stored(database) == []


def test_sqlite_table_is_clustered_on_the_key(database: Database) -> None:
    if not database.is_sqlite:
        with database.engine.connect() as conn:
            pk = sa.inspect(conn).get_pk_constraint("telemetry_records")
        assert pk["constrained_columns"] == ["device_pk", "record_type", "ts"]
        return
    with database.engine.connect() as conn:
        sql = conn.scalar(sa.text("SELECT sql FROM sqlite_master WHERE name = 'telemetry_records'"))
        indexes = conn.scalars(
            sa.text(
                "SELECT name FROM sqlite_master"
                " WHERE type = 'index' AND tbl_name = 'telemetry_records'"
            )
        ).all()
    assert "WITHOUT ROWID" in sql
    assert indexes == []  # the key is the table itself: no second B-tree


@pytest.mark.parametrize("depth", [300, 1020])
def test_a_record_nested_deeper_than_orjson_writes_is_set_aside_with_the_batch_stored(
    database: Database, car: Device, depth: int
) -> None:
    # orjson reads 1024 levels but writes 255; repr recurses in C up to about 1000.
    deep = b"[" * depth + b"]" * depth
    good = b'{"@t": "obd.bat", "@ts": "2024-01-01T00:00:00Z", "v": 1}'
    odd = b'{"@t": "obd.bat", "@ts": "2024-01-01T00:00:01Z", "v": ' + deep + b"}"
    split = split_batch(orjson.loads(b"[" + good + b"," + odd + b"]"))
    assert [r.reason for r in split.rejected] == ["fields are not representable as JSON"]
    with database.session() as s:
        assert store_records(s, car.id, split.usable) == StoredCounts(1, 0)
        assert telemetry.store_rejects(s, car.id, "http", split.rejected, 1) == 1
        s.commit()
    with database.session() as s:
        kept = s.scalar(sa.text("SELECT record FROM telemetry_rejects"))
    if depth < 900:
        assert kept.startswith("{'@t': 'obd.bat'")
    else:
        assert kept == telemetry.UNSHOWABLE_RECORD


def test_at_most_a_bound_of_one_batchs_rejects_are_kept(database: Database, car: Device) -> None:
    # A million tiny bad records would otherwise be a million rows (hundreds of MiB).
    bound = 1000  # telemetry.MAX_REJECTS_KEPT_PER_BATCH, docs/telemetry-ingest.md
    split = split_batch(list(range(bound + 500)))
    assert len(split.rejected) == bound + 500  # every one is counted
    with database.session() as s:
        assert telemetry.store_rejects(s, car.id, "http", split.rejected, 1) == bound
        s.commit()
    with database.session() as s:
        positions = list(s.scalars(sa.text("SELECT position FROM telemetry_rejects")))
    assert sorted(positions) == list(range(bound))  # the first ones
