"""Add device_tokens.kid: the signing key a device token was (re-)signed with.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02

No table holds a usable device token: the list shows each one by signing its stored claims
again (docs/design.md, "Device tokens"). HS256 over the same claims gives the same token only
with the same key, so the row names the key id it was signed with; after a key rotation the
list keeps signing with that key while it verifies, and moves the token to the current key
once it no longer does.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("device_tokens") as batch:
        batch.add_column(sa.Column("kid", sa.String(64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("device_tokens") as batch:
        batch.drop_column("kid")
