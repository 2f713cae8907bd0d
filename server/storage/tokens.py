"""Tokens: AutoPi API tokens, rotating refresh tokens, Thinger access tokens, server secrets.

Secrets we hand out are random and high-entropy, so only their SHA-256 is stored and lookups
go by that indexed hash. Each secret is shown once, when it is created.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from server.errors import InvalidArgument, NotFound, Unauthenticated
from server.security.hashing import hash_secret, new_secret
from server.storage._common import insert_ignore, paginate, utcnow
from server.storage.models import AccessToken, ApiToken, RefreshToken, ServerSecret, User

__all__ = [
    "MAX_NAME_LENGTH",
    "authenticate_api_token",
    "consume_refresh_token",
    "create_access_token",
    "create_api_token",
    "delete_access_token",
    "delete_api_token",
    "get_active_access_token",
    "get_or_create_secret",
    "issue_refresh_token",
    "list_access_tokens",
    "list_api_tokens",
    "revoke_refresh_family",
]

MAX_NAME_LENGTH = 100
INVALID_REFRESH = "invalid refresh token"
_PERMISSION_KEYS = frozenset({"device", "resources", "actions"})


def _validate_name(name: str) -> str:
    name = (name or "").strip()
    if not name:
        raise InvalidArgument("name is required")
    if len(name) > MAX_NAME_LENGTH:
        raise InvalidArgument(f"name must be at most {MAX_NAME_LENGTH} characters")
    return name


def _validate_expiry(expire_time: datetime | None, now: datetime) -> datetime | None:
    if expire_time is None:
        return None
    expire_time = utcnow(expire_time)
    if expire_time <= now:
        raise InvalidArgument("expire_time must be in the future")
    return expire_time


def _require_user(s: Session, user_id: int) -> None:
    if s.get(User, user_id) is None:
        raise NotFound(f"user {user_id} not found")


def _active(model: Any, now: datetime) -> sa.ColumnElement[bool]:
    """SQL condition: not revoked and not expired at ``now``."""
    return sa.and_(
        model.revoke_time.is_(None),
        sa.or_(model.expire_time.is_(None), model.expire_time > now),
    )


# --- API tokens (AutoPi "Authorization: APIToken X") -------------------------------------


def create_api_token(
    s: Session,
    user_id: int,
    name: str,
    expire_time: datetime | None = None,
    now: datetime | None = None,
) -> tuple[ApiToken, str]:
    """Create an API token; returns it with its secret, which is never retrievable again."""
    now = utcnow(now)
    name = _validate_name(name)
    expire_time = _validate_expiry(expire_time, now)
    _require_user(s, user_id)
    secret = new_secret()
    token = ApiToken(
        user_id=user_id,
        name=name,
        token_hash=hash_secret(secret),
        create_time=now,
        expire_time=expire_time,
    )
    s.add(token)
    s.flush()
    return token, secret


def list_api_tokens(
    s: Session, user_id: int, page_size: int | None = 0, page_token: str | None = ""
) -> tuple[Sequence[ApiToken], str]:
    """A page of the user's API tokens, newest first, and the next page token ("" at end)."""
    stmt = sa.select(ApiToken).where(ApiToken.user_id == user_id)
    return paginate(
        s, stmt, ApiToken.create_time, ApiToken.id, f"api_tokens:{user_id}", page_size, page_token
    )


def _delete_owned(
    s: Session, model: type[ApiToken] | type[AccessToken], user_id: int, token_id: object, what: str
) -> None:
    """Delete a user's token; NotFound also when it belongs to someone else (AIP-193)."""
    result = s.execute(sa.delete(model).where(model.id == token_id, model.user_id == user_id))
    if not getattr(result, "rowcount", 0):
        raise NotFound(f"{what} {token_id} not found")


def delete_api_token(s: Session, user_id: int, token_id: int) -> None:
    """Delete one of the user's API tokens; it stops working at once."""
    _delete_owned(s, ApiToken, user_id, token_id, "api token")


def authenticate_api_token(s: Session, secret: str, now: datetime | None = None) -> User:
    """The owner of an active API token; Unauthenticated if unknown, expired or revoked."""
    now = utcnow(now)
    user = s.scalar(
        sa.select(User)
        .join(ApiToken, ApiToken.user_id == User.id)
        .where(ApiToken.token_hash == hash_secret(secret), _active(ApiToken, now))
    )
    if user is None:
        raise Unauthenticated("invalid api token")
    return user


# --- Refresh tokens (rotating, single use) ------------------------------------------------


def issue_refresh_token(
    s: Session,
    user_id: int,
    family_id: str | None,
    expire_time: datetime,
    now: datetime | None = None,
) -> RefreshToken:
    """Issue a refresh token in ``family_id`` (a new family at login when None).

    Rotation must consume the old token and issue the new one in the same transaction: then a
    concurrent reuse either wins the consume itself or sees (and revokes) the new token too.
    Issuing into a family that has been revoked raises Unauthenticated.
    """
    now = utcnow(now)
    expire_time = utcnow(expire_time)
    if family_id is None:
        family_id = secrets.token_hex(16)
    else:
        revoked = s.scalar(
            sa.select(RefreshToken.jti)
            .where(RefreshToken.family_id == family_id, RefreshToken.revoke_time.is_not(None))
            .limit(1)
        )
        if revoked is not None:
            raise Unauthenticated(INVALID_REFRESH)
    token = RefreshToken(
        jti=secrets.token_hex(16),
        family_id=family_id,
        user_id=user_id,
        issue_time=now,
        expire_time=expire_time,
    )
    s.add(token)
    s.flush()
    return token


def revoke_refresh_family(s: Session, family_id: str, now: datetime | None = None) -> int:
    """Revoke every not-yet-revoked token of a family (logout, reuse); returns the count."""
    now = utcnow(now)
    result = s.execute(
        sa.update(RefreshToken)
        .where(RefreshToken.family_id == family_id, RefreshToken.revoke_time.is_(None))
        .values(revoke_time=now)
    )
    return int(getattr(result, "rowcount", 0) or 0)


def revoke_refresh_token(s: Session, jti: str, now: datetime | None = None) -> int:
    """Revoke the family of refresh token ``jti`` (a leaked token); 0 when it is unknown."""
    token = s.get(RefreshToken, jti)
    if token is None:
        return 0
    return revoke_refresh_family(s, token.family_id, now)


def consume_refresh_token(s: Session, jti: str, now: datetime | None = None) -> RefreshToken:
    """Spend a refresh token exactly once; the caller then issues its successor.

    The single conditional UPDATE makes the check-and-spend atomic across replicas. Any
    failure raises ``Unauthenticated("invalid refresh token")``. When the token was already
    spent or revoked, that is a replay (a stolen token or a stolen successor): the whole family
    is revoked and the session is **committed before raising**, so the revocation persists even
    though the caller's unit of work then rolls back. Call this first in its own unit of work.
    """
    now = utcnow(now)
    result = s.execute(
        sa.update(RefreshToken)
        .where(
            RefreshToken.jti == jti,
            RefreshToken.use_time.is_(None),
            RefreshToken.revoke_time.is_(None),
            RefreshToken.expire_time > now,
        )
        .values(use_time=now)
        .execution_options(synchronize_session=False)
    )
    token = s.get(RefreshToken, jti, populate_existing=True)
    if getattr(result, "rowcount", 0) == 1 and token is not None:
        return token
    if token is not None and (token.use_time is not None or token.revoke_time is not None):
        revoke_refresh_family(s, token.family_id, now)
        s.commit()
    raise Unauthenticated(INVALID_REFRESH)


# --- Access tokens (Thinger user-defined tokens) ------------------------------------------


def _validate_permissions(permissions: Any) -> list[dict[str, Any]]:
    if not isinstance(permissions, list):
        raise InvalidArgument("permissions must be a list")
    for i, entry in enumerate(permissions):
        if not isinstance(entry, dict):
            raise InvalidArgument(f"permissions[{i}] must be an object")
        unknown = set(entry) - _PERMISSION_KEYS
        if unknown:
            raise InvalidArgument(f"permissions[{i}] has unknown fields: {sorted(unknown)}")
        if "device" in entry and not isinstance(entry["device"], str):
            raise InvalidArgument(f"permissions[{i}].device must be a string")
        for key in ("resources", "actions"):
            value = entry.get(key, [])
            if not (
                isinstance(value, str)
                or (isinstance(value, list) and all(isinstance(v, str) for v in value))
            ):
                raise InvalidArgument(f"permissions[{i}].{key} must be a string or strings")
    return permissions


def create_access_token(
    s: Session,
    user_id: int,
    name: str,
    permissions: list[dict[str, Any]],
    expire_time: datetime | None = None,
    now: datetime | None = None,
) -> AccessToken:
    """Record a user-defined token; its id becomes the JWT's ``jti``."""
    now = utcnow(now)
    name = _validate_name(name)
    permissions = _validate_permissions(permissions)
    expire_time = _validate_expiry(expire_time, now)
    _require_user(s, user_id)
    token = AccessToken(
        id=secrets.token_hex(12),
        user_id=user_id,
        name=name,
        permissions=permissions,
        create_time=now,
        expire_time=expire_time,
    )
    s.add(token)
    s.flush()
    return token


def list_access_tokens(s: Session, user_id: int) -> Sequence[AccessToken]:
    """All the user's access tokens, newest first."""
    return s.scalars(
        sa.select(AccessToken)
        .where(AccessToken.user_id == user_id)
        .order_by(AccessToken.create_time.desc(), AccessToken.id.desc())
    ).all()


def delete_access_token(s: Session, user_id: int, token_id: str) -> None:
    """Delete one of the user's access tokens; its JWTs stop working at once."""
    _delete_owned(s, AccessToken, user_id, token_id, "access token")


def get_active_access_token(s: Session, token_id: str, now: datetime | None = None) -> AccessToken:
    """The token behind a JWT's ``jti``; Unauthenticated if unknown, revoked or expired."""
    now = utcnow(now)
    token = s.scalar(
        sa.select(AccessToken).where(AccessToken.id == token_id, _active(AccessToken, now))
    )
    if token is None:
        raise Unauthenticated("invalid access token")
    return token


# --- Server secrets ------------------------------------------------------------------------


def get_or_create_secret(s: Session, name: str, nbytes: int = 32) -> bytes:
    """The persisted secret ``name``, generated on first use.

    Insert-or-ignore then read: when two processes race, both read the one that won.
    """
    insert_ignore(s, ServerSecret, {"name": name, "value": secrets.token_bytes(nbytes)})
    value = s.scalar(sa.select(ServerSecret.value).where(ServerSecret.name == name))
    if value is None:  # pragma: no cover - the insert above guarantees a row
        raise RuntimeError(f"server secret {name!r} vanished")
    return bytes(value)
