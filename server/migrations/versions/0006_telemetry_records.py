"""Add telemetry_records: device records keyed by (device, @t, @ts), stored exactly once.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01

The natural key is the primary key, so a retried batch inserts nothing new
(``ON CONFLICT DO NOTHING``). SQLite gets a ``WITHOUT ROWID`` table clustered on the key:
one B-tree per insert instead of a rowid table plus an index. ``ts`` is epoch microseconds
(docs/design.md, "Telemetry storage").
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "telemetry_records",
        sa.Column("device_pk", sa.Integer(), nullable=False),
        sa.Column("record_type", sa.String(128), nullable=False),
        sa.Column("ts", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("fields", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["device_pk"],
            ["devices.id"],
            name="fk_telemetry_records_device_pk_devices",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("device_pk", "record_type", "ts", name="pk_telemetry_records"),
        sqlite_with_rowid=False,
    )


def downgrade() -> None:
    op.drop_table("telemetry_records")
