"""Database: URLs, connection settings, units of work, migrations."""

from __future__ import annotations

import asyncio
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.orm import Session

from server.migrations import alembic_config
from server.storage import db as db_module
from server.storage.db import Database, normalize_url
from server.storage.models import Base, Organization

TABLES = {
    "users",
    "api_tokens",
    "refresh_tokens",
    "access_tokens",
    "devices",
    "device_tokens",
    "organizations",
    "inputs",
    "assets",
    "asset_inputs",
    "login_throttle",
    "telemetry_records",
    "telemetry_rejects",
    "telemetry_batches",
    "input_data",
    "telemetry_rollups",
    "telemetry_dirty_minutes",
    "input_rollups",
    "input_dirty_hours",
}


T0 = datetime(2030, 1, 1, tzinfo=UTC)


def org(name: str) -> Organization:
    """A row that any test can add: a unit of work needs something to write."""
    return Organization(id=name, name=name, api_key_hash="0" * 64, create_time=T0)


@pytest.mark.parametrize(
    ("url", "driver"),
    [
        ("postgresql://u@h/db", "postgresql+psycopg"),
        ("postgres://u@h/db", "postgresql+psycopg"),
        ("postgresql+psycopg://u@h/db", "postgresql+psycopg"),
        ("sqlite:///./var/x.db", "sqlite"),
    ],
)
def test_normalize_url(url: str, driver: str) -> None:
    assert normalize_url(url).drivername == driver


def test_sqlite_creates_parent_directory_and_sets_pragmas(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "dir" / "t.db"
    db = Database(f"sqlite:///{path}")
    try:
        assert path.parent.is_dir()
        with db.engine.connect() as conn:
            pragma = lambda name: conn.exec_driver_sql(f"PRAGMA {name}").scalar()  # noqa: E731
            assert pragma("journal_mode") == "wal"
            assert pragma("foreign_keys") == 1
            assert pragma("busy_timeout") == 5000
            assert pragma("synchronous") == 1  # NORMAL
    finally:
        db.dispose()


def test_session_commits_on_success_and_rolls_back_on_error(database: Database) -> None:
    with database.session() as s:
        s.add(org("kept"))

    def fail_midway(s: Session) -> None:
        s.add(org("lost"))
        s.flush()
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        database.call(fail_midway)
    with database.session() as s:
        names = set(s.scalars(sa.select(Organization.id)))
    assert names == {"kept"}


def test_run_executes_off_the_event_loop_thread(database: Database) -> None:
    def work(s: Session) -> tuple[int, int]:
        s.add(org("x"))
        return threading.get_ident(), s.scalar(sa.select(sa.func.count(Organization.id))) or 0

    async def main() -> tuple[int, tuple[int, int]]:
        return threading.get_ident(), await database.run(work)

    loop_thread, (worker_thread, count) = asyncio.run(main())
    assert loop_thread != worker_thread
    assert count == 1


def test_migrate_creates_every_table_and_is_idempotent(database_url: str) -> None:
    db = Database(database_url)
    try:
        db.migrate()
        db.migrate()
        tables = set(sa.inspect(db.engine).get_table_names())
        assert tables >= TABLES | {"alembic_version"}
        with db.engine.connect() as conn:
            assert conn.scalar(sa.text("SELECT version_num FROM alembic_version")) == "0008"
    finally:
        db.dispose()


def test_migration_matches_the_models(database: Database) -> None:
    with database.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        assert compare_metadata(context, Base.metadata) == []


def upgrade_to(db: Database, revision: str) -> None:
    """Bring `db`'s schema to `revision` (an older database, before `migrate`)."""
    with db.engine.begin() as conn:
        config = alembic_config(db.url)
        config.attributes["connection"] = conn
        command.upgrade(config, revision)


def test_database_at_revision_0001_upgrades_keeping_its_data(database_url: str) -> None:
    db = Database(database_url)
    try:
        upgrade_to(db, "0001")
        with db.session() as s:
            s.add(org("survivor"))
        db.migrate()
        db.migrate()
        with db.session() as s:
            assert s.get(Organization, "survivor") is not None
    finally:
        db.dispose()


def test_a_second_process_sees_the_migrated_schema(database_url: str) -> None:
    first, second = Database(database_url), Database(database_url)
    try:
        first.migrate()
        second.migrate()
        with second.session() as s:
            s.add(org("a"))
        with first.session() as s:
            assert s.get(Organization, "a") is not None
    finally:
        first.dispose()
        second.dispose()


def test_only_the_unit_of_work_commits() -> None:
    """Database.session commits or rolls back; no repository function commits on its own.

    A function that must outlive a failure says so by raising (RefreshTokenReplayed) or by
    being run in a unit of work of its own (begin_login), so every commit is at a call site.
    """
    storage = Path(db_module.__file__).parent
    committing = sorted(
        str(path.relative_to(storage))
        for path in storage.rglob("*.py")
        if path.name != "db.py" and ".commit(" in path.read_text()
    )
    assert committing == []


def test_records_stored_before_rollups_read_the_same_after_the_upgrade(
    database_url: str,
) -> None:
    """Migration 0008 on a database with records: every minute holding one is marked, so
    reads are raw until the fold, and the same after it (negative times included)."""
    from server.storage import devices, logbook, rollups, users
    from server.storage.logbook import FieldType
    from server.storage.models import TelemetryDirtyMinute, TelemetryRecord, TelemetryRollup
    from server.storage.series import Aggregation, Window

    minute = 60_000_000
    db = Database(database_url)
    try:
        upgrade_to(db, "0007")
        with db.session() as s:
            ada = users.create_user(s, "ada@example.com", "s3cret-Passw0rd", "ada")
            car = devices.create_device(s, ada.id, "car", "device-credentials")[0].id
            s.add_all(
                TelemetryRecord(
                    device_pk=car, record_type="obd.bat", ts=ts, fields=f'{{"voltage": {v}}}'
                )
                for ts, v in ((-minute - 1, 1), (-1, 2), (0, 4), (minute + 5, 8), (90 * minute, 16))
            )
        db.migrate()
        splits = logbook.field_splits("obd.bat.voltage")
        assert splits is not None
        window = Window(-2 * minute, 120 * minute, 60 * minute)

        def read() -> list[tuple[int, object]]:
            with db.session() as s:
                return [
                    (b.first_ts, b.value)
                    for b in logbook.read_aggregated(
                        s, car, splits, FieldType.LONG, Aggregation.SUM, window, 100
                    )
                ]

        with db.session() as s:
            marked = sorted(s.scalars(sa.select(TelemetryDirtyMinute.minute_ts)))
        assert marked == [-2 * minute, -minute, 0, minute, 90 * minute]
        before = read()
        assert [value for _, value in before] == [15, 16]
        while db.call(lambda s: rollups.fold_records(s, limit=50, quiet_us=0)):
            pass
        with db.session() as s:
            assert s.scalar(sa.select(sa.func.count()).select_from(TelemetryDirtyMinute)) == 0
            assert s.scalar(sa.select(sa.func.count()).select_from(TelemetryRollup)) == 5
        assert read() == before
    finally:
        db.dispose()
