"""Thinger user-defined access tokens: JWTs whose ``jti`` names a row, scoped by permissions.

The row makes them revocable; the permissions are checked by `server/auth/permissions.py`
before anything is written, and stored in its canonical shape.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Session

from server.auth.permissions import parse_permissions, permissions_json
from server.clock import utc_now
from server.errors import Unauthenticated
from server.storage.models import AccessToken
from server.storage.tokens._rules import active, add_token, delete_owned

__all__ = [
    "create_access_token",
    "delete_access_token",
    "get_active_access_token",
    "list_access_tokens",
]


def create_access_token(
    s: Session,
    user_id: int,
    name: str,
    permissions: object,
    expire_time: datetime | None = None,
    now: datetime | None = None,
) -> AccessToken:
    """Record a user-defined token; its id becomes the JWT's ``jti``.

    ``permissions`` is the JSON list of grants as the client sent it, or `FULL_ACCESS`
    (None) for none sent; InvalidArgument for any other shape, an empty list included (see
    `server.auth.permissions`), for a bad name or a past expiry.
    """
    grants = parse_permissions(permissions)
    return add_token(
        s,
        AccessToken,
        user_id,
        name,
        expire_time,
        now,
        "token_expiration",
        id=secrets.token_hex(12),
        permissions=permissions_json(grants),
    )


def list_access_tokens(s: Session, user_id: int) -> Sequence[AccessToken]:
    """All the user's access tokens, newest first."""
    return s.scalars(
        sa.select(AccessToken)
        .where(AccessToken.user_id == user_id)
        .order_by(AccessToken.create_time.desc(), AccessToken.id.desc())
    ).all()


def delete_access_token(s: Session, user_id: int, token_id: str) -> None:
    """Delete one of the user's access tokens; its JWTs stop working at once."""
    delete_owned(s, AccessToken, user_id, token_id, "access token")


def get_active_access_token(s: Session, token_id: str, now: datetime | None = None) -> AccessToken:
    """The token behind a JWT's ``jti``; Unauthenticated if unknown, revoked or expired."""
    now = utc_now(now)
    token = s.scalar(
        sa.select(AccessToken).where(AccessToken.id == token_id, active(AccessToken, now))
    )
    if token is None:
        raise Unauthenticated("invalid access token")
    return token
