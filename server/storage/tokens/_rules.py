"""What every kind of token shares: its name, its expiry, its owner, being active."""

from __future__ import annotations

from datetime import datetime
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.orm import Session

from server.clock import utc_now
from server.errors import InvalidArgument, NotFound
from server.storage._common import validate_name
from server.storage.models import AccessToken, ApiToken, User

MAX_NAME_LENGTH = 100

TokenRow = TypeVar("TokenRow", ApiToken, AccessToken)


def validate_token_name(name: str) -> str:
    """A token's name, stripped: 1 to `MAX_NAME_LENGTH` characters."""
    return validate_name(name, "name", MAX_NAME_LENGTH)


def future_expiry(
    expire_time: datetime | None, now: datetime, field: str = "expire_time"
) -> datetime | None:
    """``expire_time`` as UTC when it lies after ``now``; None (never) stays None.

    The one place that refuses a token born expired: the servicers and the CLI only convert
    what they were given and leave this rule to storage. ``field`` names the expiry the way
    the caller's API does.
    """
    if expire_time is None:
        return None
    expire_time = utc_now(expire_time)
    if expire_time <= now:
        raise InvalidArgument(f"{field} must be in the future")
    return expire_time


def add_token(
    s: Session,
    model: type[TokenRow],
    user_id: int,
    name: str,
    expire_time: datetime | None,
    now: datetime | None,
    expiry_field: str = "expire_time",
    **values: Any,
) -> TokenRow:
    """Add a token row: what every token is born with, checked, plus its kind's ``values``.

    The name is valid, the expiry (if any) lies ahead, the owner exists; then the row is
    flushed, so its id is known. ``expiry_field`` names the expiry as the kind's API does.
    """
    now = utc_now(now)
    row = model(
        user_id=user_id,
        name=validate_token_name(name),
        create_time=now,
        expire_time=future_expiry(expire_time, now, expiry_field),
        **values,
    )
    require_user(s, user_id)
    s.add(row)
    s.flush()
    return row


def require_user(s: Session, user_id: int) -> None:
    """NotFound unless the user exists (a token always has an owner)."""
    if s.get(User, user_id) is None:
        raise NotFound(f"user {user_id} not found")


def active(model: Any, now: datetime) -> sa.ColumnElement[bool]:
    """SQL condition: not revoked and not expired at ``now``."""
    return sa.and_(
        model.revoke_time.is_(None),
        sa.or_(model.expire_time.is_(None), model.expire_time > now),
    )


def delete_owned(
    s: Session, model: type[ApiToken] | type[AccessToken], user_id: int, token_id: object, what: str
) -> None:
    """Delete a user's token; NotFound also when it belongs to someone else (AIP-193)."""
    result = s.execute(sa.delete(model).where(model.id == token_id, model.user_id == user_id))
    if not getattr(result, "rowcount", 0):
        raise NotFound(f"{what} {token_id} not found")
