"""Add device_tokens.link: a token the operator issued to open its device's link.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01

A device token created through the Devices API is a caller's token: it reads and calls its
device. Only a token issued for the link (`thingwire device token`) may open the link and
so be the device (docs/design.md, "Device tokens"). The flag is one of the stored claims
(``lnk``): the list signs it again like the others. Existing tokens are callers' tokens.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("device_tokens") as batch:
        batch.add_column(sa.Column("link", sa.Boolean(), nullable=False, server_default=sa.false()))


def downgrade() -> None:
    with op.batch_alter_table("device_tokens") as batch:
        batch.drop_column("link")
