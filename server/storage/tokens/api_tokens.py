"""AutoPi API tokens (``Authorization: APIToken <secret>``): long-lived, optionally expiring."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Session

from server.clock import utc_now
from server.errors import Unauthenticated
from server.security.hashing import hash_secret, new_secret
from server.storage._common import paginate
from server.storage.models import ApiToken, User
from server.storage.tokens._rules import active, add_token, delete_owned

__all__ = ["authenticate_api_token", "create_api_token", "delete_api_token", "list_api_tokens"]


def create_api_token(
    s: Session,
    user_id: int,
    name: str,
    expire_time: datetime | None = None,
    now: datetime | None = None,
) -> tuple[ApiToken, str]:
    """Create an API token; returns it with its secret, which is never retrievable again."""
    secret = new_secret()
    token = add_token(s, ApiToken, user_id, name, expire_time, now, token_hash=hash_secret(secret))
    return token, secret


def list_api_tokens(
    s: Session, user_id: int, page_size: int | None = 0, page_token: str | None = ""
) -> tuple[Sequence[ApiToken], str]:
    """A page of the user's API tokens, newest first, and the next page token ("" at end)."""
    stmt = sa.select(ApiToken).where(ApiToken.user_id == user_id)
    return paginate(
        s, stmt, ApiToken.create_time, ApiToken.id, f"api_tokens:{user_id}", page_size, page_token
    )


def delete_api_token(s: Session, user_id: int, token_id: int) -> None:
    """Delete one of the user's API tokens; it stops working at once."""
    delete_owned(s, ApiToken, user_id, token_id, "api token")


def authenticate_api_token(s: Session, secret: str, now: datetime | None = None) -> User:
    """The owner of an active API token; Unauthenticated if unknown, expired or revoked."""
    now = utc_now(now)
    user = s.scalar(
        sa.select(User)
        .join(ApiToken, ApiToken.user_id == User.id)
        .where(ApiToken.token_hash == hash_secret(secret), active(ApiToken, now))
    )
    if user is None:
        raise Unauthenticated("invalid api token")
    return user
