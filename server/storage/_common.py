"""Helpers shared by the repository modules: names, insert-or-ignore, AIP-158 paging."""

from __future__ import annotations

import base64
import binascii
import json
import unicodedata
from collections.abc import Sequence
from datetime import datetime
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.orm import DeclarativeBase, InstrumentedAttribute, Session

from server.clock import utc_now
from server.errors import InvalidArgument

T = TypeVar("T")

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000


def validate_name(name: str, what: str, max_length: int) -> str:
    """A display name, stripped: required, at most ``max_length`` characters, and free of
    control characters (a NUL, a newline or an escape sequence would corrupt listings,
    logs and terminals that show it, and PostgreSQL refuses a NUL in text outright).

    ``what`` names it in the message ("name", "organization name"), so that each kind of
    record keeps its own wording and limit while the rule stays one.
    """
    name = (name or "").strip()
    if not name:
        raise InvalidArgument(f"{what} is required")
    if len(name) > max_length:
        raise InvalidArgument(f"{what} must be at most {max_length} characters")
    if any(unicodedata.category(c) == "Cc" for c in name):
        raise InvalidArgument(f"{what} must not contain control characters")
    return name


def insert_ignore(
    s: Session | Connection,
    model: type[DeclarativeBase] | sa.Table,
    values: dict[str, Any] | Sequence[dict[str, Any]],
) -> int:
    """INSERT of one row or many that does nothing for a row whose primary/unique key
    exists; returns the rows inserted.

    Race-free on both backends (``ON CONFLICT DO NOTHING``), unlike select-then-insert. On
    SQLite it also opens the write transaction, so what follows in the unit of work is
    serialised against other writers. Many rows are one multi-row VALUES statement (the
    callers pass at most a batch's bounded rejects); ``preserve_rowcount`` keeps its count,
    which SQLAlchemy otherwise reports only for UPDATE and DELETE.
    """
    dialect = (s.dialect if isinstance(s, Connection) else s.get_bind().dialect).name
    module: Any
    if dialect == "sqlite":
        module = sqlite
    elif dialect == "postgresql":
        module = postgresql
    else:  # pragma: no cover - only the two supported backends
        raise NotImplementedError(dialect)
    rows = [values] if isinstance(values, dict) else list(values)
    stmt = (
        module.insert(model)
        .values(rows)
        .on_conflict_do_nothing()
        .execution_options(preserve_rowcount=True)
    )
    result = s.execute(stmt)
    return int(getattr(result, "rowcount", 0) or 0)


def page_size_of(page_size: int | None) -> int:
    """AIP-158: negative is an error, 0/None means the default, large values are capped."""
    if page_size is None or page_size == 0:
        return DEFAULT_PAGE_SIZE
    if page_size < 0:
        raise InvalidArgument("page_size must not be negative")
    return min(page_size, MAX_PAGE_SIZE)


def _encode_token(scope: str, create_time: datetime, key: Any) -> str:
    raw = json.dumps({"s": scope, "t": create_time.isoformat(), "k": key}).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


MAX_KEY = 2**63 - 1
MAX_KEY_TEXT = 64


def _decode_token(scope: str, token: str, key_type: type) -> tuple[datetime, Any]:
    """The position a page token names; InvalidArgument for anything not made by us.

    Tokens are opaque but unsigned, so every part is checked for type and range before it
    reaches SQL (a forged key of the wrong type would otherwise be a database error).
    """
    try:
        padded = token + "=" * (-len(token) % 4)
        data = json.loads(base64.urlsafe_b64decode(padded.encode()))
        if not isinstance(data, dict) or data.get("s") != scope:
            raise ValueError("token from another listing")
        after_time, after_key = data["t"], data["k"]
        if not isinstance(after_time, str) or type(after_key) is not key_type:
            raise TypeError("bad position")
        if isinstance(after_key, int) and not -MAX_KEY <= after_key <= MAX_KEY:
            raise ValueError("key out of range")
        if isinstance(after_key, str) and len(after_key) > MAX_KEY_TEXT:
            raise ValueError("key too long")
        return utc_now(datetime.fromisoformat(after_time)), after_key
    except (ValueError, KeyError, TypeError, OverflowError, binascii.Error) as exc:
        raise InvalidArgument("invalid page_token") from exc


def paginate(
    s: Session,
    stmt: sa.Select[T],
    time_col: InstrumentedAttribute[datetime],
    key_col: InstrumentedAttribute[Any],
    scope: str,
    page_size: int | None,
    page_token: str | None,
) -> tuple[Sequence[T], str]:
    """Newest-first keyset pagination over (create_time, key), stable under inserts.

    The page token is opaque to clients and bound to ``scope`` (the listing and its parent),
    so a token from another listing is rejected instead of silently mixing results.
    """
    size = page_size_of(page_size)
    if page_token:
        after_time, after_key = _decode_token(scope, page_token, key_col.type.python_type)
        stmt = stmt.where(
            sa.or_(time_col < after_time, sa.and_(time_col == after_time, key_col < after_key))
        )
    rows = s.scalars(stmt.order_by(time_col.desc(), key_col.desc()).limit(size + 1)).all()
    if len(rows) <= size:
        return rows, ""
    last = rows[size - 1]
    token = _encode_token(scope, getattr(last, time_col.key), getattr(last, key_col.key))
    return rows[:size], token
