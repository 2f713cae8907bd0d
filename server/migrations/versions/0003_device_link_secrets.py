"""Add devices.link_secret_hash: the device link's cheap reconnect secret.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01

A device that opens its link with its credentials (argon2) receives a random link secret;
later opens present it instead, checked by its SHA-256 (docs/device-link.md). NULL means no
secret was issued, or it was revoked.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("devices") as batch:
        batch.add_column(sa.Column("link_secret_hash", sa.String(64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("devices") as batch:
        batch.drop_column("link_secret_hash")
