"""Initial schema: users, tokens, devices, organisations, secrets, login throttle.

Revision ID: 0001
Revises:
Create Date: 2025-01-01

Written by hand; it freezes the schema as of this revision, so it uses plain SQLAlchemy types
and does not import the models (which will keep changing).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _time(name: str, nullable: bool = False) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _user_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["user_id"], ["users.id"], name=f"fk_{table}_user_id_users", ondelete="CASCADE"
    )


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("id", sa.Integer, nullable=False),
        sa.Column("email", sa.String(254), nullable=False),
        sa.Column("username", sa.String(32), nullable=False),
        sa.Column("password_hash", sa.String(255), nullable=False),
        sa.Column("timezone", sa.String(64), server_default="UTC", nullable=False),
        _time("create_time"),
        sa.PrimaryKeyConstraint("id", name="pk_users"),
        sa.UniqueConstraint("email", name="uq_users_email"),
        sa.UniqueConstraint("username", name="uq_users_username"),
        # Never reuse an id (a retried DELETE must not hit a newer row).
        sqlite_autoincrement=True,
    )

    op.create_table(
        "api_tokens",
        sa.Column("id", sa.Integer, nullable=False),
        sa.Column("user_id", sa.Integer, nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False),
        _time("create_time"),
        _time("expire_time", nullable=True),
        _time("revoke_time", nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_api_tokens"),
        _user_fk("api_tokens"),
        # Never reuse an id (a retried DELETE must not hit a newer row).
        sqlite_autoincrement=True,
    )
    op.create_index("ix_api_tokens_user_id", "api_tokens", ["user_id"])
    op.create_index("ix_api_tokens_token_hash", "api_tokens", ["token_hash"], unique=True)

    op.create_table(
        "refresh_tokens",
        sa.Column("jti", sa.String(64), nullable=False),
        sa.Column("family_id", sa.String(64), nullable=False),
        sa.Column("user_id", sa.Integer, nullable=False),
        _time("issue_time"),
        _time("expire_time"),
        _time("use_time", nullable=True),
        _time("revoke_time", nullable=True),
        sa.PrimaryKeyConstraint("jti", name="pk_refresh_tokens"),
        _user_fk("refresh_tokens"),
    )
    op.create_index("ix_refresh_tokens_family_id", "refresh_tokens", ["family_id"])
    op.create_index("ix_refresh_tokens_user_id", "refresh_tokens", ["user_id"])

    op.create_table(
        "access_tokens",
        sa.Column("id", sa.String(24), nullable=False),
        sa.Column("user_id", sa.Integer, nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("permissions", sa.JSON, nullable=False),
        _time("create_time"),
        _time("expire_time", nullable=True),
        _time("revoke_time", nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_access_tokens"),
        _user_fk("access_tokens"),
    )
    op.create_index("ix_access_tokens_user_id", "access_tokens", ["user_id"])

    op.create_table(
        "devices",
        sa.Column("id", sa.Integer, nullable=False),
        sa.Column("user_id", sa.Integer, nullable=False),
        sa.Column("device_id", sa.String(25), nullable=False),
        sa.Column("unit_id", sa.String(36), nullable=False),
        sa.Column("description", sa.String(1024), server_default="", nullable=False),
        sa.Column("credentials_hash", sa.String(255), nullable=False),
        sa.Column("push_token_hash", sa.String(64), nullable=False),
        _time("create_time"),
        sa.Column("connected", sa.Boolean, server_default=sa.false(), nullable=False),
        _time("connected_time", nullable=True),
        sa.Column("ip_address", sa.String(64), nullable=True),
        sa.Column("rx_bytes", sa.BigInteger, server_default="0", nullable=False),
        sa.Column("tx_bytes", sa.BigInteger, server_default="0", nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_devices"),
        _user_fk("devices"),
        sa.UniqueConstraint("user_id", "device_id", name="uq_devices_user_id_device_id"),
        sa.UniqueConstraint("unit_id", name="uq_devices_unit_id"),
        # Never reuse an id (a retried DELETE must not hit a newer row).
        sqlite_autoincrement=True,
    )
    op.create_index("ix_devices_user_id", "devices", ["user_id"])
    op.create_index("ix_devices_push_token_hash", "devices", ["push_token_hash"], unique=True)

    op.create_table(
        "device_tokens",
        sa.Column("id", sa.String(24), nullable=False),
        sa.Column("device_pk", sa.Integer, nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("resources", sa.JSON, nullable=False),
        _time("create_time"),
        _time("expire_time", nullable=True),
        _time("revoke_time", nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_device_tokens"),
        sa.ForeignKeyConstraint(
            ["device_pk"],
            ["devices.id"],
            name="fk_device_tokens_device_pk_devices",
            ondelete="CASCADE",
        ),
    )
    op.create_index("ix_device_tokens_device_pk", "device_tokens", ["device_pk"])

    op.create_table(
        "organizations",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("api_key_hash", sa.String(64), nullable=False),
        _time("create_time"),
        sa.PrimaryKeyConstraint("id", name="pk_organizations"),
    )

    op.create_table(
        "inputs",
        sa.Column("id", sa.String(13), nullable=False),
        sa.Column("org_id", sa.String(64), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("measure_unit", sa.String(50), server_default="", nullable=False),
        _time("create_time"),
        sa.PrimaryKeyConstraint("id", name="pk_inputs"),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["organizations.id"],
            name="fk_inputs_org_id_organizations",
            ondelete="CASCADE",
        ),
    )
    op.create_index("ix_inputs_org_id", "inputs", ["org_id"])

    op.create_table(
        "assets",
        sa.Column("id", sa.Integer, autoincrement=True, nullable=False),
        sa.Column("org_id", sa.String(64), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        _time("create_time"),
        sa.PrimaryKeyConstraint("id", name="pk_assets"),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["organizations.id"],
            name="fk_assets_org_id_organizations",
            ondelete="CASCADE",
        ),
        # Never reuse an id (a retried DELETE must not hit a newer row).
        sqlite_autoincrement=True,
    )
    op.create_index("ix_assets_org_id", "assets", ["org_id"])

    op.create_table(
        "asset_inputs",
        sa.Column("asset_id", sa.Integer, nullable=False),
        sa.Column("input_id", sa.String(13), nullable=False),
        sa.PrimaryKeyConstraint("asset_id", "input_id", name="pk_asset_inputs"),
        sa.ForeignKeyConstraint(
            ["asset_id"], ["assets.id"], name="fk_asset_inputs_asset_id_assets", ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["input_id"], ["inputs.id"], name="fk_asset_inputs_input_id_inputs", ondelete="CASCADE"
        ),
    )

    op.create_table(
        "server_secrets",
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("value", sa.LargeBinary, nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_server_secrets"),
    )

    op.create_table(
        "login_throttle",
        sa.Column("key", sa.String(254), nullable=False),
        sa.Column("failures", sa.Integer, server_default="0", nullable=False),
        _time("window_start"),
        _time("locked_until", nullable=True),
        sa.PrimaryKeyConstraint("key", name="pk_login_throttle"),
    )


def downgrade() -> None:
    for table in (
        "login_throttle",
        "server_secrets",
        "asset_inputs",
        "assets",
        "inputs",
        "organizations",
        "device_tokens",
        "devices",
        "access_tokens",
        "refresh_tokens",
        "api_tokens",
        "users",
    ):
        op.drop_table(table)
