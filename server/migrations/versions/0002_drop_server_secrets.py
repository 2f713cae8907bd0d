"""Drop server_secrets: the JWT signing key lives in the key file, not in the database.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01

`server.state.open_database` moves a key left in the table out to the key file before it
migrates. Anything that upgrades another way and finds a key still there stops here, rather
than drop the key that every issued token was signed with.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    left = op.get_bind().execute(sa.text("SELECT COUNT(*) FROM server_secrets")).scalar()
    if left:
        raise RuntimeError(
            "server_secrets still holds the JWT signing key: upgrade with `thingwire serve` or "
            "a `thingwire` management command, which move it to the key file first"
        )
    op.drop_table("server_secrets")


def downgrade() -> None:
    op.create_table(
        "server_secrets",
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("value", sa.LargeBinary, nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_server_secrets"),
    )
