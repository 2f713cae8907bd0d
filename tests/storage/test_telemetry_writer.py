"""TelemetryWriter: records, rejects and batch ids of one batch commit together, once."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import sqlalchemy as sa

from server.storage.db import Database
from server.storage.models import Device, TelemetryBatch, TelemetryReject
from server.storage.telemetry import split_batch
from server.telemetry.writer import TelemetryWriter, WriteOutcome
from tests.storage.test_telemetry import car, seed_batch, stored  # noqa: F401 - fixture

BAD = [{"@t": "obd.bat"}, 42, {"@t": "x", "@ts": "yesterday"}]


def write(
    database: Database, device: Device, batch: Sequence[object], **kw: object
) -> WriteOutcome:
    async def once() -> WriteOutcome:
        writer = TelemetryWriter(database)
        try:
            return await writer.write(device.id, split_batch(batch), "http", **kw)  # type: ignore[arg-type]
        finally:
            await writer.stop()

    return asyncio.run(once())


def rejects(database: Database) -> list[tuple[int, str, str]]:
    with database.session() as s:
        rows = s.execute(
            sa.select(
                TelemetryReject.position, TelemetryReject.reason, TelemetryReject.source
            ).order_by(TelemetryReject.position)
        ).all()
    return [tuple(r) for r in rows]  # type: ignore[misc]


def test_a_partly_bad_batch_stores_the_good_and_sets_the_bad_aside_once(
    database: Database,
    car: Device,  # noqa: F811
) -> None:
    batch = [*seed_batch(), *BAD]
    assert write(database, car, batch) == WriteOutcome(4, 0, 3)
    assert write(database, car, batch) == WriteOutcome(0, 4, 3)
    assert len(stored(database)) == 4
    assert [(p, src) for p, _, src in rejects(database)] == [(4, "http"), (5, "http"), (6, "http")]
    assert rejects(database)[0][1] == "missing @ts"


def test_a_batch_id_seen_before_writes_nothing(database: Database, car: Device) -> None:  # noqa: F811
    assert write(database, car, seed_batch()[:2], batch_id="b-1") == WriteOutcome(2, 0, 0)
    again = write(database, car, seed_batch(), batch_id="b-1")
    assert again == WriteOutcome(0, 4, 0, batch_repeat=True)
    assert len(stored(database)) == 2
    assert write(database, car, seed_batch(), batch_id="b-2") == WriteOutcome(2, 2, 0)
    with database.session() as s:
        assert s.scalar(sa.select(sa.func.count()).select_from(TelemetryBatch)) == 2


def test_a_nul_in_a_field_is_set_aside_not_stored(database: Database, car: Device) -> None:  # noqa: F811
    batch = [{"@t": "x", "@ts": "2024-01-01T00:00:00Z", "note": "a\x00b"}]
    assert write(database, car, batch) == WriteOutcome(0, 0, 1)
    assert "NUL" in rejects(database)[0][1]
