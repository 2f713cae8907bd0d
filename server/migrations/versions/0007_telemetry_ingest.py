"""Add what telemetry ingest and reads need beyond the record store.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01

- ``telemetry_rejects``: records set aside from pushed batches, with the reason, for an
  operator to see and count; keyed by (device, digest of the record) so a retried batch
  sets each bad record aside once.
- ``telemetry_batches``: batch ids uploaded over the device link, so a batch sent again
  after a lost acknowledgement is recognised as a whole (the records are idempotent too).
- ``input_data``: Datacooee input data, one row per (input, timestamp), with a real id.
- On PostgreSQL, ``telemetry_records.fields`` becomes ``jsonb``: reads extract fields from
  it in SQL without parsing text row by row. SQLite keeps text (``json_extract`` reads it).

docs/design.md, "Telemetry storage", explains each choice.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "telemetry_rejects",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("device_pk", sa.Integer(), nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("received_ts", sa.BigInteger(), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("reason", sa.String(200), nullable=False),
        sa.Column("record", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["device_pk"],
            ["devices.id"],
            name="fk_telemetry_rejects_device_pk_devices",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_telemetry_rejects"),
        sa.UniqueConstraint("device_pk", "digest", name="uq_telemetry_rejects_device_pk_digest"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_telemetry_rejects_received_ts", "telemetry_rejects", ["received_ts"])
    op.create_index("ix_telemetry_rejects_device_pk_id", "telemetry_rejects", ["device_pk", "id"])
    op.create_table(
        "telemetry_batches",
        sa.Column("device_pk", sa.Integer(), nullable=False),
        sa.Column("batch_id", sa.String(64), nullable=False),
        sa.Column("received_ts", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["device_pk"],
            ["devices.id"],
            name="fk_telemetry_batches_device_pk_devices",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("device_pk", "batch_id", name="pk_telemetry_batches"),
        sqlite_with_rowid=False,
    )
    op.create_index("ix_telemetry_batches_received_ts", "telemetry_batches", ["received_ts"])
    op.create_table(
        "input_data",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("input_id", sa.String(13), nullable=False),
        sa.Column("ts", sa.BigInteger(), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("number", sa.Float(), nullable=True),
        sa.Column("latitude", sa.Float(), nullable=True),
        sa.Column("longitude", sa.Float(), nullable=True),
        sa.Column("metadata", sa.Text(), nullable=True),
        sa.Column("x_axis_value", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["input_id"],
            ["inputs.id"],
            name="fk_input_data_input_id_inputs",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_input_data"),
        sa.UniqueConstraint("input_id", "ts", name="uq_input_data_input_id_ts"),
        sqlite_autoincrement=True,
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "ALTER TABLE telemetry_records ALTER COLUMN fields TYPE jsonb USING fields::jsonb"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE telemetry_records ALTER COLUMN fields TYPE text")
    op.drop_table("input_data")
    op.drop_index("ix_telemetry_batches_received_ts", table_name="telemetry_batches")
    op.drop_table("telemetry_batches")
    op.drop_index("ix_telemetry_rejects_device_pk_id", table_name="telemetry_rejects")
    op.drop_index("ix_telemetry_rejects_received_ts", table_name="telemetry_rejects")
    op.drop_table("telemetry_rejects")
