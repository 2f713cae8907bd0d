"""Telemetry retention on both databases: old rows go, new rows stay, in bounded deletes."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import event

from server import app
from server.config import ConfigError, Settings
from server.state import AppState
from server.storage import devices, orgs, retention, telemetry
from server.storage.db import Database
from server.storage.logbook import explain
from server.storage.models import (
    InputData,
    TelemetryBatch,
    TelemetryRecord,
    TelemetryReject,
    User,
)
from server.storage.telemetry import Rejected
from server.telemetry.retention import Retention

NOW = datetime(2026, 6, 1, tzinfo=UTC)
DAY = 86_400_000_000
NOW_US = (NOW - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)
CUTOFF = NOW_US - 30 * DAY


class Deletes:
    """Every DELETE of stored telemetry the engine runs, with the rows it removed (the
    rollups that follow each delete are derived data, checked in tests/storage/test_rollups.py)."""

    def __init__(self, database: Database) -> None:
        self.rowcounts: list[int] = []
        event.listen(database.engine, "after_cursor_execute", self._seen)

    def _seen(self, conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        words = statement.split()
        if words[0].upper() == "DELETE" and not words[2].endswith("_rollups"):
            self.rowcounts.append(cursor.rowcount)


@pytest.fixture
def deletes(database: Database) -> Iterator[Deletes]:
    watcher = Deletes(database)
    yield watcher
    event.remove(database.engine, "after_cursor_execute", watcher._seen)


def fill(database: Database, owner: User) -> dict[str, Any]:
    """Old and new rows of every kind retention covers; returns what must stay."""
    with database.session() as s:
        cars = [devices.create_device(s, owner.id, f"car{i}", "c")[0].id for i in range(2)]
        org, _ = orgs.create_org(s, "acme")
        sensor = orgs.create_input(s, org.id, "temperature").id
    old = [CUTOFF - DAY - i * 1_000_000 for i in range(1200)]
    new = [CUTOFF + i * 1_000_000 for i in range(50)]
    with database.session() as s:
        for car in cars:
            for record_type in ("obd.bat", "track.pos", "a.b"):
                rows = [(record_type, t, '{"v": 1}') for t in old + new]
                telemetry.store_records(s, car, rows)
        rejects = [Rejected(i, "bad", {"n": i}) for i in range(700)]
        for push in range(6):  # six old pushes of 100 rejects each, one arrival time each
            old_push = rejects[push * 100 : (push + 1) * 100]
            telemetry.store_rejects(s, cars[0], "http", old_push, CUTOFF - 1 - push)
        telemetry.store_rejects(s, cars[0], "http", rejects[600:], CUTOFF + 1)
        for i in range(650):
            telemetry.claim_batch(s, cars[1], f"old{i}", CUTOFF - 5 - i)
        telemetry.claim_batch(s, cars[1], "new", CUTOFF)
        s.execute(
            sa.insert(InputData),
            [{"input_id": sensor, "ts": t, "value": "1", "number": 1.0} for t in old[:900] + new],
        )
    return {"records": 2 * 3 * len(new), "rejects": 100, "batches": 1, "input_data": len(new)}


def counts(database: Database) -> dict[str, Any]:
    with database.session() as s:
        return {
            "records": s.scalar(sa.select(sa.func.count()).select_from(TelemetryRecord)),
            "oldest": s.scalar(sa.select(sa.func.min(TelemetryRecord.ts))),
            "rejects": s.scalar(sa.select(sa.func.count()).select_from(TelemetryReject)),
            "batches": s.scalar(sa.select(sa.func.count()).select_from(TelemetryBatch)),
            "input_data": s.scalar(sa.select(sa.func.count()).select_from(InputData)),
        }


def test_old_rows_go_new_rows_stay_in_bounded_deletes(
    database: Database, ada: User, deletes: Deletes
) -> None:
    kept = fill(database, ada)
    retention = Retention(days=30, batch_rows=500, pause_s=0)
    removed = asyncio.run(retention.run(database, NOW))
    after = counts(database)
    assert after["records"] == kept["records"]
    assert after["oldest"] == CUTOFF
    assert (after["rejects"], after["batches"], after["input_data"]) == (
        kept["rejects"],
        kept["batches"],
        kept["input_data"],
    )
    assert (removed.records, removed.rejects, removed.batch_ids, removed.input_data) == (
        2 * 3 * 1200,
        600,
        650,
        900,
    )
    # Every statement removed at most one batch; 1200 old rows per series took three each.
    assert deletes.rowcounts
    assert max(deletes.rowcounts) <= 500
    assert len(deletes.rowcounts) == removed.statements >= 6 * 3 + 2 + 2 + 2
    # A second pass finds nothing and deletes nothing from the records.
    again = asyncio.run(retention.run(database, NOW))
    assert (again.records, again.rejects, again.batch_ids, again.input_data) == (0, 0, 0, 0)


def test_zero_days_keeps_everything(database: Database, ada: User, deletes: Deletes) -> None:
    fill(database, ada)
    before = counts(database)
    removed = asyncio.run(Retention(days=0).run(database, NOW))
    assert removed.statements == 0
    assert counts(database) == before
    assert deletes.rowcounts == []


def test_the_maintenance_task_applies_retention(
    database: Database, ada: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    fill(database, ada)
    monkeypatch.setattr(app, "MAINTENANCE_INTERVAL_SECONDS", 0.01)

    async def run() -> None:
        state = await AppState.open(
            database, clock=lambda: NOW, retention=Retention(days=30, pause_s=0)
        )
        task = asyncio.create_task(app._maintain(state))
        try:
            for _ in range(500):
                await asyncio.sleep(0.02)
                if (await asyncio.to_thread(counts, database))["input_data"] == 50:
                    break
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            state.logins.close()

    asyncio.run(run())
    assert counts(database)["oldest"] == CUTOFF


@pytest.mark.parametrize(("raw", "days"), [("30", 30.0), ("0", 0.0), ("0.5", 0.5)])
def test_the_setting(raw: str, days: float) -> None:
    assert (
        Settings.from_env({"THINGWIRE_TELEMETRY_RETENTION_DAYS": raw}).telemetry_retention_days
        == days
    )


def test_the_setting_defaults_to_forever() -> None:
    assert Settings.from_env({}).telemetry_retention_days == 0


@pytest.mark.parametrize("raw", ["", "-1", "forever", "nan", "1e9"])
def test_bad_settings_are_refused(raw: str) -> None:
    with pytest.raises(ConfigError, match="THINGWIRE_TELEMETRY_RETENTION_DAYS"):
        Settings.from_env({"THINGWIRE_TELEMETRY_RETENTION_DAYS": raw})


def test_one_push_of_rejects_goes_whole(database: Database, ada: User, deletes: Deletes) -> None:
    """Rejects of one push share their arrival time: a batch ends on a whole push."""
    with database.session() as s:
        car = devices.create_device(s, ada.id, "car", "c")[0].id
        rejects = [Rejected(i, "bad", {"n": i}) for i in range(30)]
        telemetry.store_rejects(s, car, "http", rejects[:25], CUTOFF - 10)
        telemetry.store_rejects(s, car, "http", rejects[25:], CUTOFF - 5)
    removed = asyncio.run(Retention(days=30, batch_rows=10, pause_s=0).run(database, NOW))
    assert removed.rejects == 30
    assert deletes.rowcounts[:2] == [25, 5]


def test_record_deletes_are_index_ranges(database: Database, ada: User) -> None:
    with database.session() as s:
        cars = [devices.create_device(s, ada.id, f"car{i}", "c")[0].id for i in range(4)]
        for car in cars:
            rows = [(t, ts, '{"v": 1}') for t in ("obd.bat", "obd.rpm") for ts in range(5000)]
            telemetry.store_records(s, car, rows)
    with database.engine.connect() as connection:
        connection.exec_driver_sql("ANALYZE")
        connection.commit()
    records = retention._RECORDS
    where = (
        records.c.device_pk == cars[0],
        records.c.record_type == "obd.bat",
        records.c.ts < 10**9,
    )
    with database.session() as s:
        plan = explain(s, retention._delete_range(records, records.c.ts, where, 500))
        types = explain(
            s,
            sa.select(records.c.record_type)
            .where(records.c.device_pk == cars[0], records.c.record_type > "a")
            .order_by(records.c.record_type)
            .limit(1),
        )
    if database.is_sqlite:
        assert "SCAN telemetry_records" not in plan + types, plan + types
        assert (
            "SEARCH telemetry_records USING PRIMARY KEY (device_pk=? AND record_type=? AND ts<?)"
            in plan
            or "ts>? AND ts<?" in plan
        ), plan
    else:
        assert "Seq Scan" not in plan + types, plan + types
        assert "Index Cond" in plan, plan
