"""JSON Web Tokens in the shapes the Thinger and AutoPi documents show.

- access token: ``{"exp", "iat", "usr"}``, two hours (both APIs accept it as ``Bearer``);
- refresh token: ``{"exp", "iat", "jti"}``, about two months, single use (state in storage);
- user-defined access token: ``{"iat", "jti", "usr", "typ": "user"}`` and ``exp`` only when
  the owner set one; revocable, so its jti is checked against storage on every call.

Tokens are told apart by their claims, so a refresh token never passes as an access token
and an access token never refreshes. All are HS256, signed with the current key of the key
file (`server/security/keys.py`, never the database), whose ``kid`` is in the header; a
token is verified with the key its ``kid`` names, while that key is current or in its grace.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt

from server.errors import Unauthenticated
from server.security.keys import KeyFile, KeyRing

ALGORITHM = "HS256"
ACCESS_TOKEN_LIFETIME = timedelta(hours=2)
REFRESH_TOKEN_LIFETIME = timedelta(days=60)
USER_TOKEN_TYPE = "user"  # noqa: S105 - a claim value, not a secret


@dataclass(frozen=True)
class Claims:
    """What a verified token says; the caller decides what kind it needed."""

    username: str | None
    jti: str | None
    token_type: str | None
    expire_time: datetime | None
    issue_time: datetime


def _claim_time(value: object) -> datetime:
    """A NumericDate claim as a datetime; TypeError/ValueError/OverflowError when it is not."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError("not a number")
    return datetime.fromtimestamp(value, tz=UTC)


class TokenSigner:
    """Signs with the current key, verifies with the key a token's ``kid`` names."""

    def __init__(self, keys: KeyRing | KeyFile) -> None:
        self._keys = keys

    def _ring(self) -> KeyRing:
        return self._keys if isinstance(self._keys, KeyRing) else self._keys.ring()

    def _encode(self, payload: dict[str, Any]) -> str:
        key = self._ring().current
        return jwt.encode(payload, key.secret, algorithm=ALGORITHM, headers={"kid": key.kid})

    def access_token(self, username: str, now: datetime) -> str:
        """A two-hour access token for `username`."""
        iat = int(now.timestamp())
        exp = int((now + ACCESS_TOKEN_LIFETIME).timestamp())
        return self._encode({"exp": exp, "iat": iat, "usr": username})

    def refresh_token(self, jti: str, now: datetime, expire_time: datetime) -> str:
        """A refresh token naming the storage row `jti`."""
        iat = int(now.timestamp())
        return self._encode({"exp": int(expire_time.timestamp()), "iat": iat, "jti": jti})

    def user_token(
        self, username: str, jti: str, now: datetime, expire_time: datetime | None
    ) -> str:
        """A user-defined access token; it expires only if the owner asked for it."""
        payload: dict[str, Any] = {
            "iat": int(now.timestamp()),
            "jti": jti,
            "usr": username,
            "typ": USER_TOKEN_TYPE,
        }
        if expire_time is not None:
            payload["exp"] = int(expire_time.timestamp())
        return self._encode(payload)

    def verify(self, token: str, now: datetime) -> Claims:
        """Check signature and expiry; raise Unauthenticated with a generic message otherwise."""
        try:
            kid = jwt.get_unverified_header(token).get("kid")
            if kid is not None and not isinstance(kid, str):
                raise Unauthenticated("invalid token")
            secret = self._ring().verifying_secret(kid, now)
            payload = jwt.decode(
                token,
                secret,
                algorithms=[ALGORITHM],
                options={"verify_exp": False, "require": ["iat"]},
            )
        except jwt.PyJWTError:
            raise Unauthenticated("invalid token") from None
        token_type = payload.get("typ")
        try:
            issue_time = _claim_time(payload["iat"])
            exp = payload.get("exp")
            expire_time = None if exp is None else _claim_time(exp)
        except (TypeError, ValueError, OverflowError, OSError):
            raise Unauthenticated("invalid token") from None
        if expire_time is None and token_type != USER_TOKEN_TYPE:
            # Only a user-defined token may live forever; a login token without exp is forged
            # or broken.
            raise Unauthenticated("invalid token")
        if expire_time is not None and expire_time <= now:
            raise Unauthenticated("token expired")
        username = payload.get("usr")
        jti = payload.get("jti")
        return Claims(
            username=username if isinstance(username, str) else None,
            jti=jti if isinstance(jti, str) else None,
            token_type=token_type if isinstance(token_type, str) else None,
            expire_time=expire_time,
            issue_time=issue_time,
        )
