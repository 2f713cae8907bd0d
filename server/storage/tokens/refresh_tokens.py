"""Thinger refresh tokens: rotating, single use, in families that die together on a replay.

No function here commits: a replay is reported as `RefreshTokenReplayed`, and the caller
revokes the family in a unit of work of its own (the one that saw the replay rolls back).
"""

from __future__ import annotations

import secrets
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Session

from server.clock import utc_now
from server.errors import Unauthenticated
from server.storage.models import RefreshToken

__all__ = [
    "INVALID_REFRESH",
    "RefreshTokenReplayed",
    "consume_refresh_token",
    "issue_refresh_token",
    "revoke_refresh_family",
    "revoke_refresh_token",
]

INVALID_REFRESH = "invalid refresh token"


class RefreshTokenReplayed(Unauthenticated):
    """A spent or revoked refresh token came back: a stolen token or a stolen successor.

    Its whole family must be revoked, and that revocation must outlive the unit of work that
    found the replay (which rolls back, since this is an error): the caller runs
    `revoke_refresh_family` with `family_id` in a unit of work of its own.
    """

    def __init__(self, family_id: str) -> None:
        super().__init__(INVALID_REFRESH)
        self.family_id = family_id


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
    now = utc_now(now)
    expire_time = utc_now(expire_time)
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
    now = utc_now(now)
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

    The single conditional UPDATE makes the check-and-spend atomic across replicas. An
    unknown or expired token raises ``Unauthenticated("invalid refresh token")``; a spent or
    revoked one raises `RefreshTokenReplayed` (the same message), on which the caller must
    revoke the family in a unit of work of its own. Nothing is committed here.
    """
    now = utc_now(now)
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
        raise RefreshTokenReplayed(token.family_id)
    raise Unauthenticated(INVALID_REFRESH)
