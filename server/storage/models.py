"""SQLAlchemy 2 models: the one data model under every API face.

Times are timezone-aware UTC ``datetime`` objects everywhere in Python. PostgreSQL stores them
as ``timestamptz``; SQLite has no time zone type, so ``UTCDateTime`` stores naive UTC there
and re-attaches UTC on read. The schema itself is created by the hand-written Alembic
migrations in ``server/migrations/versions``; keep them in step with this module
(``test_migration_matches_the_models`` in ``tests/storage/test_db.py`` compares the two).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

__all__ = [
    "AccessToken",
    "ApiToken",
    "Asset",
    "Base",
    "Device",
    "DeviceToken",
    "Input",
    "InputData",
    "InputDirtyHour",
    "InputRollup",
    "JSONText",
    "LoginThrottle",
    "Organization",
    "RefreshToken",
    "TelemetryBatch",
    "TelemetryDirtyMinute",
    "TelemetryRecord",
    "TelemetryReject",
    "TelemetryRollup",
    "UTCDateTime",
    "User",
    "asset_inputs",
]

# Deterministic constraint names, so later migrations (batch mode on SQLite) can address them.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(sa.TypeDecorator[datetime]):
    """A timezone-aware UTC datetime on every backend.

    Naive values are taken to be UTC already. SQLite gets naive UTC (it would otherwise drop
    or mangle the offset); values read back always carry ``tzinfo=UTC``.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class JSONText(sa.TypeDecorator[str]):
    """JSON held as text in Python: ``text`` on SQLite, ``jsonb`` on PostgreSQL.

    Callers bind and read compact JSON text on both backends. PostgreSQL keeps it as
    ``jsonb`` so that reads extract fields in SQL without parsing text per row; psycopg
    hands ``jsonb`` back parsed, so a value read is serialised again to keep one contract.
    An INSERT … SELECT from text must cast to ``jsonb`` (the batch insert takes its fields
    from a jsonb array).
    """

    impl = sa.Text
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> sa.types.TypeEngine[Any]:
        if dialect.name == "postgresql":
            from sqlalchemy.dialects.postgresql import JSONB

            return dialect.type_descriptor(JSONB(none_as_null=True))
        return dialect.type_descriptor(sa.Text())

    def process_bind_param(self, value: str | None, dialect: Dialect) -> Any:
        if value is None or dialect.name != "postgresql":
            return value
        # The JSONB type serialises what it is given: hand it the parsed value.
        return orjson.loads(value)

    def process_result_value(self, value: Any, dialect: Dialect) -> str | None:
        if value is None or isinstance(value, str):
            return value
        return orjson.dumps(value).decode()


class Base(DeclarativeBase):
    """Declarative base carrying the naming convention."""

    metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: dict[Any, Any] = {  # noqa: RUF012 - SQLAlchemy's documented hook
        datetime: UTCDateTime(),
    }


def _fk(target: str) -> sa.ForeignKey:
    return sa.ForeignKey(target, ondelete="CASCADE")


class User(Base):
    """An account; ``username`` is Thinger's ``{USER_ID}`` path segment."""

    __tablename__ = "users"
    __table_args__ = ({"sqlite_autoincrement": True},)  # ids are never reused

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(sa.String(254), unique=True)
    username: Mapped[str] = mapped_column(sa.String(32), unique=True)
    password_hash: Mapped[str] = mapped_column(sa.String(255))
    timezone: Mapped[str] = mapped_column(sa.String(64), default="UTC", server_default="UTC")
    create_time: Mapped[datetime]


class ApiToken(Base):
    """AutoPi ``Authorization: APIToken X``; only the SHA-256 of the secret is stored."""

    __tablename__ = "api_tokens"
    __table_args__ = ({"sqlite_autoincrement": True},)  # a retried DELETE hits no newer token

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(_fk("users.id"), index=True)
    name: Mapped[str] = mapped_column(sa.String(100))
    token_hash: Mapped[str] = mapped_column(sa.String(64), unique=True, index=True)
    create_time: Mapped[datetime]
    expire_time: Mapped[datetime | None]
    revoke_time: Mapped[datetime | None]


class RefreshToken(Base):
    """A rotating, single-use refresh token; reuse of a spent one revokes its family."""

    __tablename__ = "refresh_tokens"

    jti: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    family_id: Mapped[str] = mapped_column(sa.String(64), index=True)
    user_id: Mapped[int] = mapped_column(_fk("users.id"), index=True)
    issue_time: Mapped[datetime]
    expire_time: Mapped[datetime]
    use_time: Mapped[datetime | None]
    revoke_time: Mapped[datetime | None]


class AccessToken(Base):
    """A Thinger user-defined token: a JWT whose ``jti`` is this row's id."""

    __tablename__ = "access_tokens"

    id: Mapped[str] = mapped_column(sa.String(24), primary_key=True)
    user_id: Mapped[int] = mapped_column(_fk("users.id"), index=True)
    name: Mapped[str] = mapped_column(sa.String(100))
    permissions: Mapped[list[dict[str, Any]]] = mapped_column(sa.JSON)
    create_time: Mapped[datetime]
    expire_time: Mapped[datetime | None]
    revoke_time: Mapped[datetime | None]


class Device(Base):
    """A device: Thinger ``device`` id (unique per owner) and AutoPi ``unit_id`` (global)."""

    __tablename__ = "devices"
    __table_args__ = (
        sa.UniqueConstraint("user_id", "device_id"),
        {"sqlite_autoincrement": True},  # ids are never reused
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(_fk("users.id"), index=True)
    device_id: Mapped[str] = mapped_column(sa.String(25))
    unit_id: Mapped[str] = mapped_column(sa.String(36), unique=True)
    description: Mapped[str] = mapped_column(sa.String(1024), default="", server_default="")
    credentials_hash: Mapped[str] = mapped_column(sa.String(255))
    push_token_hash: Mapped[str] = mapped_column(sa.String(64), unique=True, index=True)
    #: SHA-256 of the device link's reconnect secret (docs/device-link.md); None: none issued.
    link_secret_hash: Mapped[str | None] = mapped_column(sa.String(64))
    create_time: Mapped[datetime]
    connected: Mapped[bool] = mapped_column(default=False, server_default=sa.false())
    connected_time: Mapped[datetime | None]
    ip_address: Mapped[str | None] = mapped_column(sa.String(64))
    rx_bytes: Mapped[int] = mapped_column(sa.BigInteger, default=0, server_default="0")
    tx_bytes: Mapped[int] = mapped_column(sa.BigInteger, default=0, server_default="0")


class DeviceToken(Base):
    """A Thinger device token, scoped to one device and optionally to some resources."""

    __tablename__ = "device_tokens"

    id: Mapped[str] = mapped_column(sa.String(24), primary_key=True)
    device_pk: Mapped[int] = mapped_column(_fk("devices.id"), index=True)
    name: Mapped[str] = mapped_column(sa.String(100))
    #: The resources the token may call; empty: every resource (no ``res`` claim).
    resources: Mapped[list[str]] = mapped_column(sa.JSON)
    #: The token's ``iat``: re-signing the stored claims gives the token again.
    create_time: Mapped[datetime]
    expire_time: Mapped[datetime | None]
    revoke_time: Mapped[datetime | None]
    #: The signing key's id (docs/design.md, "Device tokens"); None: the current key.
    kid: Mapped[str | None] = mapped_column(sa.String(64))
    #: Issued to open the device's link (claim ``lnk``), not to call it (docs/design.md,
    #: "Device tokens"); only the operator's `thingwire device token` sets it.
    link: Mapped[bool] = mapped_column(sa.Boolean, default=False, server_default=sa.false())


class Organization(Base):
    """A Datacooee organisation, authenticated by ``ORGANIZATION-ID`` + API key headers."""

    __tablename__ = "organizations"

    id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(200))
    api_key_hash: Mapped[str] = mapped_column(sa.String(64))
    create_time: Mapped[datetime]


asset_inputs = sa.Table(
    "asset_inputs",
    Base.metadata,
    sa.Column("asset_id", sa.Integer, _fk("assets.id"), primary_key=True),
    sa.Column("input_id", sa.String(13), _fk("inputs.id"), primary_key=True),
)


class Input(Base):
    """A Datacooee input (a numeric series), id ``sen`` + 10 lowercase alphanumerics."""

    __tablename__ = "inputs"

    id: Mapped[str] = mapped_column(sa.String(13), primary_key=True)
    org_id: Mapped[str] = mapped_column(sa.String(64), _fk("organizations.id"), index=True)
    name: Mapped[str] = mapped_column(sa.String(200))
    measure_unit: Mapped[str] = mapped_column(sa.String(50), default="", server_default="")
    create_time: Mapped[datetime]


class Asset(Base):
    """A Datacooee asset grouping inputs of the same organisation."""

    __tablename__ = "assets"
    __table_args__ = ({"sqlite_autoincrement": True},)  # ids are never reused

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    org_id: Mapped[str] = mapped_column(sa.String(64), _fk("organizations.id"), index=True)
    name: Mapped[str] = mapped_column(sa.String(200))
    create_time: Mapped[datetime]
    # selectin: assets leave the worker thread detached, so their inputs must be loaded eagerly.
    inputs: Mapped[list[Input]] = relationship(
        secondary=asset_inputs, lazy="selectin", order_by=Input.id
    )


class LoginThrottle(Base):
    """Failed-login bookkeeping per account (or unknown login), in the DB so replicas share it."""

    __tablename__ = "login_throttle"

    key: Mapped[str] = mapped_column(sa.String(254), primary_key=True)
    failures: Mapped[int] = mapped_column(default=0, server_default="0")
    window_start: Mapped[datetime]
    locked_until: Mapped[datetime | None]


class TelemetryRecord(Base):
    """One device record (``@t``, ``@ts``, any other fields), stored exactly once.

    The primary key is the natural key (device, ``@t``, ``@ts``), so a batch sent again is
    ignored row by row (``ON CONFLICT DO NOTHING``). On SQLite the table is ``WITHOUT ROWID``:
    the rows live in the key's B-tree, one B-tree written per insert instead of a rowid table
    plus an index (docs/design.md, "Telemetry storage"). ``ts`` is epoch microseconds, the
    precision devices send, as an integer that aggregation buckets by arithmetic.
    """

    __tablename__ = "telemetry_records"
    __table_args__ = ({"sqlite_with_rowid": False},)

    device_pk: Mapped[int] = mapped_column(_fk("devices.id"), primary_key=True)
    record_type: Mapped[str] = mapped_column(sa.String(128), primary_key=True)
    ts: Mapped[int] = mapped_column(sa.BigInteger, primary_key=True, autoincrement=False)
    #: The record's other fields (``@t`` and ``@ts`` removed) as compact JSON text.
    fields: Mapped[str] = mapped_column(JSONText)


class TelemetryReject(Base):
    """A record set aside from a pushed batch, with why, for an operator to see and count.

    Unique per (device, SHA-256 of the record as received): a retried batch sets each bad
    record aside once. ``record`` is the record as compact JSON, cut to a bounded length.
    """

    __tablename__ = "telemetry_rejects"
    __table_args__ = (
        sa.UniqueConstraint("device_pk", "digest"),
        # A device's rejects listed in order of arrival (AIP-158 pages by id).
        sa.Index("ix_telemetry_rejects_device_pk_id", "device_pk", "id"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    device_pk: Mapped[int] = mapped_column(_fk("devices.id"))
    digest: Mapped[str] = mapped_column(sa.String(64))
    #: When it arrived, epoch microseconds (retention deletes by it).
    received_ts: Mapped[int] = mapped_column(sa.BigInteger, index=True)
    #: How it arrived: "http" or "link".
    source: Mapped[str] = mapped_column(sa.String(16))
    #: Its position in its batch, from 0.
    position: Mapped[int]
    reason: Mapped[str] = mapped_column(sa.String(200))
    record: Mapped[str] = mapped_column(sa.Text)


class TelemetryBatch(Base):
    """A batch id uploaded over the device link: a batch sent again is recognised whole."""

    __tablename__ = "telemetry_batches"
    __table_args__ = ({"sqlite_with_rowid": False},)

    device_pk: Mapped[int] = mapped_column(_fk("devices.id"), primary_key=True)
    batch_id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    #: When it was stored, epoch microseconds (retention deletes by it).
    received_ts: Mapped[int] = mapped_column(sa.BigInteger, index=True)


class InputData(Base):
    """One Datacooee value of an input, unique per (input, timestamp), with a real id.

    ``value`` is kept as sent (Datacooee values are strings, "12.5"); ``number`` is its
    numeric reading, null when it has none, which statistics aggregate in SQL.
    """

    __tablename__ = "input_data"
    __table_args__ = (
        sa.UniqueConstraint("input_id", "ts"),
        {"sqlite_autoincrement": True},  # ids are echoed to clients: never reused
    )

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    input_id: Mapped[str] = mapped_column(sa.String(13), _fk("inputs.id"))
    #: The sample's time, epoch microseconds.
    ts: Mapped[int] = mapped_column(sa.BigInteger)
    value: Mapped[str] = mapped_column(sa.Text)
    number: Mapped[float | None] = mapped_column(sa.Float)
    latitude: Mapped[float | None] = mapped_column(sa.Float)
    longitude: Mapped[float | None] = mapped_column(sa.Float)
    #: ``metadata`` is reserved by SQLAlchemy's declarative base; the column keeps the name.
    meta: Mapped[str | None] = mapped_column("metadata", sa.Text)
    x_axis_value: Mapped[str | None] = mapped_column(sa.Text)


#: A whole number on SQLite (its ``CAST … AS BIGINT`` of a long field), a double on
#: PostgreSQL (``trunc`` of a double): the type a long field's value has in each database.
LongValue = sa.Float().with_variant(sa.BigInteger(), "sqlite")


class TelemetryRollup(Base):
    """The numeric values of one key of one (device, record type) over one UTC minute.

    Derived from ``telemetry_records`` by the rollup fold (server/storage/rollups.py): the
    count, sum, min and max of the key's JSON numbers, read as doubles (``float``) and
    truncated toward zero (``long``), and the times of the minute's first and last such
    sample. A minute with a row in ``telemetry_dirty_minutes`` is not trusted: reads take
    its raw records instead (docs/telemetry-reads.md, "Rollups").
    """

    __tablename__ = "telemetry_rollups"
    __table_args__ = ({"sqlite_with_rowid": False},)

    device_pk: Mapped[int] = mapped_column(_fk("devices.id"), primary_key=True)
    record_type: Mapped[str] = mapped_column(sa.String(128), primary_key=True)
    #: The minute's first microsecond (epoch µs, a multiple of 60,000,000).
    minute_ts: Mapped[int] = mapped_column(sa.BigInteger, primary_key=True, autoincrement=False)
    key: Mapped[str] = mapped_column(sa.String(255), primary_key=True)
    count: Mapped[int] = mapped_column(sa.BigInteger)
    sum_float: Mapped[float] = mapped_column(sa.Float)
    min_float: Mapped[float] = mapped_column(sa.Float)
    max_float: Mapped[float] = mapped_column(sa.Float)
    sum_long: Mapped[float] = mapped_column(sa.Float)
    min_long: Mapped[float] = mapped_column(LongValue)
    max_long: Mapped[float] = mapped_column(LongValue)
    first_ts: Mapped[int] = mapped_column(sa.BigInteger)
    last_ts: Mapped[int] = mapped_column(sa.BigInteger)


class TelemetryDirtyMinute(Base):
    """A (device, record type, minute) whose records changed since its rollups were made.

    Written in the transaction that stores (or deletes) the records; ``version`` grows at
    each mark, so the fold removes a mark only if nobody marked it again meanwhile.
    """

    __tablename__ = "telemetry_dirty_minutes"
    __table_args__ = ({"sqlite_with_rowid": False},)

    device_pk: Mapped[int] = mapped_column(_fk("devices.id"), primary_key=True)
    record_type: Mapped[str] = mapped_column(sa.String(128), primary_key=True)
    minute_ts: Mapped[int] = mapped_column(sa.BigInteger, primary_key=True, autoincrement=False)
    version: Mapped[int] = mapped_column(sa.BigInteger)
    #: When it was last marked, epoch µs: the fold waits until a minute is quiet.
    marked_ts: Mapped[int] = mapped_column(sa.BigInteger)


class InputRollup(Base):
    """The count, sum, min and max of one Datacooee input's numeric values over one UTC hour."""

    __tablename__ = "input_rollups"
    __table_args__ = ({"sqlite_with_rowid": False},)

    input_id: Mapped[str] = mapped_column(sa.String(13), _fk("inputs.id"), primary_key=True)
    #: The hour's first microsecond (epoch µs, a multiple of 3,600,000,000).
    hour_ts: Mapped[int] = mapped_column(sa.BigInteger, primary_key=True, autoincrement=False)
    count: Mapped[int] = mapped_column(sa.BigInteger)
    sum: Mapped[float] = mapped_column(sa.Float)
    min: Mapped[float] = mapped_column(sa.Float)
    max: Mapped[float] = mapped_column(sa.Float)


class InputDirtyHour(Base):
    """An (input, hour) whose values changed since its rollup was made (as
    ``TelemetryDirtyMinute``)."""

    __tablename__ = "input_dirty_hours"
    __table_args__ = ({"sqlite_with_rowid": False},)

    input_id: Mapped[str] = mapped_column(sa.String(13), _fk("inputs.id"), primary_key=True)
    hour_ts: Mapped[int] = mapped_column(sa.BigInteger, primary_key=True, autoincrement=False)
    version: Mapped[int] = mapped_column(sa.BigInteger)
    marked_ts: Mapped[int] = mapped_column(sa.BigInteger)
