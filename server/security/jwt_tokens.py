"""JSON Web Tokens in the shapes the Thinger and AutoPi documents show.

- access token: ``{"exp", "iat", "usr"}``, two hours (both APIs accept it as ``Bearer``);
- refresh token: ``{"exp", "iat", "jti"}``, about two months, single use (state in storage);
- user-defined access token: ``{"iat", "jti", "usr", "typ": "user"}`` and ``exp`` only when
  the owner set one; revocable, so its jti is checked against storage on every call;
- device token: ``{"dev", "exp"?, "iat", "jti", "res"?, "usr"}`` in the seed's (sorted)
  order, ``exp`` and ``res`` only when the owner set them; revocable like a user token, and
  shown again by signing its stored claims with the key it was signed with
  (`device_token`, docs/design.md "Device tokens"). A link token, the operator's token that
  opens a device's link, is a device token with ``"lnk": true`` (and no ``res``).

Tokens are told apart by their claims, so a refresh token never passes as an access token
and an access token never refreshes. All are HS256, signed with the current key of the key
file (`server/security/keys.py`, never the database), whose ``kid`` is in the header; a
token is verified with the key its ``kid`` names, while that key is current or in its grace.

A signer remembers the tokens it has verified (the latest `VERIFIED_CACHE_SIZE`, keyed by
the token's SHA-256): a token seen again skips the base64, JSON and HMAC work, never the
decision. Each use still checks its expiry against the clock and that the key named by its
``kid`` still verifies in the key ring the signature was checked with; a changed key file
(a rotation, a removed key) gives a new ring and so a full verification again. What the
token grants beyond its claims (a revocable token's row, its user's existence) is the
caller's to check, on every call (`server/auth/authenticator.py`).
"""

from __future__ import annotations

import hashlib
import threading
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
#: How many verified tokens a signer remembers (the oldest is forgotten first). Only memory
#: is bounded by it: a remembered token is refused at once when it expires or its key stops
#: verifying, as an unremembered one is.
VERIFIED_CACHE_SIZE = 10_000


@dataclass(frozen=True)
class Claims:
    """What a verified token says; the caller decides what kind it needed."""

    username: str | None
    jti: str | None
    token_type: str | None
    expire_time: datetime | None
    issue_time: datetime
    #: A device token's device (``dev``); None for every other kind.
    device: str | None = None
    #: A device token's resources (``res``); None when it names none (every resource).
    resources: tuple[str, ...] | None = None
    #: A device token issued to open its device's link (``"lnk": true``), not to call it.
    link: bool = False


def _claim_time(value: object) -> datetime:
    """A NumericDate claim as a datetime; TypeError/ValueError/OverflowError when it is not."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError("not a number")
    return datetime.fromtimestamp(value, tz=UTC)


@dataclass(frozen=True)
class _Verified:
    """A token whose signature was checked: what it says, and with which ring and key."""

    claims: Claims
    ring: KeyRing
    kid: str | None


class TokenSigner:
    """Signs with the current key, verifies with the key a token's ``kid`` names."""

    def __init__(self, keys: KeyRing | KeyFile, cache_size: int = VERIFIED_CACHE_SIZE) -> None:
        self._keys = keys
        # Verified tokens by SHA-256 (no token kept in the clear), oldest first: a plain
        # dict, since an entry needs no time limit of its own (every use re-checks it) and
        # a TTL cache's bookkeeping cost more than the lookup. verify may run on the event
        # loop and in worker threads: the lock serialises the changes (a lookup is one
        # atomic dict operation).
        self._cache_size = cache_size
        self._verified: dict[bytes, _Verified] = {}
        self._lock = threading.Lock()

    def _ring(self) -> KeyRing:
        return self._keys if isinstance(self._keys, KeyRing) else self._keys.ring()

    def _encode(self, payload: dict[str, Any]) -> str:
        key = self._ring().current
        return jwt.encode(payload, key.secret, algorithm=ALGORITHM, headers={"kid": key.kid})

    @property
    def current_kid(self) -> str:
        """The id of the key that signs new tokens."""
        return self._ring().current.kid

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

    def device_token(
        self,
        username: str,
        device: str,
        jti: str,
        issue_time: datetime,
        expire_time: datetime | None,
        resources: list[str] | None,
        kid: str | None,
        now: datetime,
        link: bool = False,
    ) -> tuple[str, str]:
        """A device token from its stored claims, and the id of the key that signed it.

        Signed with key ``kid`` while that key still verifies, so the same claims give the
        same token again; with the current key when it does not (retired past its grace, or
        ``kid`` None), in which case the caller records the new kid. Deterministic: HS256
        over the same header and claims, in the seed's sorted order. ``link`` adds
        ``"lnk": true``: the token opens the device's link and calls nothing.
        """
        payload: dict[str, Any] = {"dev": device}
        if expire_time is not None:
            payload["exp"] = int(expire_time.timestamp())
        payload["iat"] = int(issue_time.timestamp())
        payload["jti"] = jti
        if link:
            payload["lnk"] = True
        if resources:
            payload["res"] = list(resources)
        payload["usr"] = username
        ring = self._ring()
        key = ring.signing_key(kid, now) if kid is not None else None
        key = key or ring.current
        token = jwt.encode(payload, key.secret, algorithm=ALGORITHM, headers={"kid": key.kid})
        return token, key.kid

    def verify(self, token: str, now: datetime) -> Claims:
        """Check signature and expiry; raise Unauthenticated with a generic message otherwise.

        A token verified before is not decoded again (see the module doc): its expiry and
        its key's grace are checked against `now`, and the key ring must be the one its
        signature was checked with.
        """
        ring = self._ring()
        if self._cache_size <= 0:
            return self._decode(token, now, ring).claims
        digest = hashlib.sha256(token.encode()).digest()
        known = self._verified.get(digest)
        if known is None or known.ring is not ring:
            known = self._decode(token, now, ring)
            with self._lock:
                self._verified.pop(digest, None)
                while len(self._verified) >= self._cache_size:
                    del self._verified[next(iter(self._verified))]  # the oldest goes
                self._verified[digest] = known
            return known.claims
        ring.verifying_secret(known.kid, now)  # Unauthenticated once past its grace
        _check_expiry(known.claims, now)
        return known.claims

    def _decode(self, token: str, now: datetime, ring: KeyRing) -> _Verified:
        """The full check: header, key, signature, claims."""
        try:
            kid = jwt.get_unverified_header(token).get("kid")
            if kid is not None and not isinstance(kid, str):
                raise Unauthenticated("invalid token")
            secret = ring.verifying_secret(kid, now)
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
        device = payload.get("dev")
        if device is not None and (not isinstance(device, str) or token_type is not None):
            raise Unauthenticated("invalid token")
        if expire_time is None and token_type != USER_TOKEN_TYPE and device is None:
            # Only user-defined and device tokens may live forever; a login token without exp
            # is forged or broken.
            raise Unauthenticated("invalid token")
        if expire_time is not None and expire_time <= now:
            raise Unauthenticated("token expired")
        link = payload.get("lnk")
        if link is not None and (link is not True or device is None):
            # Absent, or ``true`` on a device token: never signed otherwise, so forged or broken.
            raise Unauthenticated("invalid token")
        username = payload.get("usr")
        jti = payload.get("jti")
        claims = Claims(
            username=username if isinstance(username, str) else None,
            jti=jti if isinstance(jti, str) else None,
            token_type=token_type if isinstance(token_type, str) else None,
            expire_time=expire_time,
            issue_time=issue_time,
            device=device,
            resources=_resources_claim(payload.get("res")),
            link=link is True,
        )
        return _Verified(claims, ring, kid)


def _check_expiry(claims: Claims, now: datetime) -> None:
    """Unauthenticated once the token's ``exp`` has come."""
    if claims.expire_time is not None and claims.expire_time <= now:
        raise Unauthenticated("token expired")


def _resources_claim(value: object) -> tuple[str, ...] | None:
    """A ``res`` claim as a tuple of names; None when absent; Unauthenticated if malformed."""
    if value is None:
        return None
    if not isinstance(value, list) or not value or not all(isinstance(r, str) for r in value):
        raise Unauthenticated("invalid token")
    return tuple(value)
