"""Add the rollups that answer long aggregated reads without reading every sample.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01

- ``telemetry_rollups``: per (device, record type, UTC minute, key) the count, sum, min
  and max of the key's numbers and the times of its first and last sample.
- ``telemetry_dirty_minutes``: the minutes whose records changed since their rollups were
  made; reads take those minutes from the raw records.
- ``input_rollups`` and ``input_dirty_hours``: the same for Datacooee values, per hour.

Data stored before this revision has no rollups: every minute (and hour) that holds data is
marked dirty here, so reads stay exact and the server's rollup fold builds the rollups in
the background. docs/telemetry-reads.md, "Rollups", explains the design.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_LONG = sa.Float().with_variant(sa.BigInteger(), "sqlite")


def _fk(table: str, column: str, target: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        [column], [target], name=f"fk_{table}_{column}_{target.split('.')[0]}", ondelete="CASCADE"
    )


def upgrade() -> None:
    op.create_table(
        "telemetry_rollups",
        sa.Column("device_pk", sa.Integer(), nullable=False),
        sa.Column("record_type", sa.String(128), nullable=False),
        sa.Column("minute_ts", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("key", sa.String(255), nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.Column("sum_float", sa.Float(), nullable=False),
        sa.Column("min_float", sa.Float(), nullable=False),
        sa.Column("max_float", sa.Float(), nullable=False),
        sa.Column("sum_long", sa.Float(), nullable=False),
        sa.Column("min_long", _LONG, nullable=False),
        sa.Column("max_long", _LONG, nullable=False),
        sa.Column("first_ts", sa.BigInteger(), nullable=False),
        sa.Column("last_ts", sa.BigInteger(), nullable=False),
        _fk("telemetry_rollups", "device_pk", "devices.id"),
        sa.PrimaryKeyConstraint(
            "device_pk", "record_type", "minute_ts", "key", name="pk_telemetry_rollups"
        ),
        sqlite_with_rowid=False,
    )
    op.create_table(
        "telemetry_dirty_minutes",
        sa.Column("device_pk", sa.Integer(), nullable=False),
        sa.Column("record_type", sa.String(128), nullable=False),
        sa.Column("minute_ts", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("marked_ts", sa.BigInteger(), nullable=False),
        _fk("telemetry_dirty_minutes", "device_pk", "devices.id"),
        sa.PrimaryKeyConstraint(
            "device_pk", "record_type", "minute_ts", name="pk_telemetry_dirty_minutes"
        ),
        sqlite_with_rowid=False,
    )
    op.create_table(
        "input_rollups",
        sa.Column("input_id", sa.String(13), nullable=False),
        sa.Column("hour_ts", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.Column("sum", sa.Float(), nullable=False),
        sa.Column("min", sa.Float(), nullable=False),
        sa.Column("max", sa.Float(), nullable=False),
        _fk("input_rollups", "input_id", "inputs.id"),
        sa.PrimaryKeyConstraint("input_id", "hour_ts", name="pk_input_rollups"),
        sqlite_with_rowid=False,
    )
    op.create_table(
        "input_dirty_hours",
        sa.Column("input_id", sa.String(13), nullable=False),
        sa.Column("hour_ts", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("marked_ts", sa.BigInteger(), nullable=False),
        _fk("input_dirty_hours", "input_id", "inputs.id"),
        sa.PrimaryKeyConstraint("input_id", "hour_ts", name="pk_input_dirty_hours"),
        sqlite_with_rowid=False,
    )
    # ts floored to its minute (hour): SQL's % truncates toward zero, hence the + unit.
    op.execute(
        "INSERT INTO telemetry_dirty_minutes (device_pk, record_type, minute_ts, version, "
        "marked_ts) SELECT DISTINCT device_pk, record_type, "
        "ts - ((ts % 60000000) + 60000000) % 60000000, 1, 0 FROM telemetry_records"
    )
    op.execute(
        "INSERT INTO input_dirty_hours (input_id, hour_ts, version, marked_ts) "
        "SELECT DISTINCT input_id, ts - ((ts % 3600000000) + 3600000000) % 3600000000, 1, 0 "
        "FROM input_data WHERE number IS NOT NULL"
    )


def downgrade() -> None:
    op.drop_table("input_dirty_hours")
    op.drop_table("input_rollups")
    op.drop_table("telemetry_dirty_minutes")
    op.drop_table("telemetry_rollups")
