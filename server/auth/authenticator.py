"""Turns a call's metadata into a principal, for the access level its rpc declares.

Accepted credentials (docs/design.md, "Credentials"):
- ``authorization: Bearer <jwt>`` — a login/OAuth access token or a user-defined token
  (the gateway moves Thinger's ``?authorization=`` query parameter into this header), and
  on ``ACCESS_USER_OR_DEVICE_TOKEN`` rpcs only, a device token (`server/auth/device_tokens.py`);
- ``authorization: APIToken <token>`` — an AutoPi API token;
- ``organization-id`` + ``organization-api-key`` — a Datacooee organisation;
- on ``ACCESS_DEVICE`` rpcs only, ``authorization: Bearer <push token>`` (the AutoPi guide)
  or ``authorization: token <push token>`` (AutoPi firmware), with an optional ``unit-id``
  header that must name the same device. A push token is never a user's credential, and a
  user's never a push token: each kind is looked up only where its access level allows.
Every failure is the same UNAUTHENTICATED answer, whatever was wrong, so a caller learns
nothing about which accounts or tokens exist.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta

from cachetools import TTLCache
from sqlalchemy.orm import Session
from thingwire.options.v1 import options_pb2

from server.auth import permissions
from server.auth.device_tokens import caller_principal
from server.auth.principal import (
    DevicePrincipal,
    OrganizationPrincipal,
    Permission,
    Principal,
    UserPrincipal,
)
from server.errors import InvalidArgument, Unauthenticated
from server.security.hashing import hash_secret
from server.security.jwt_tokens import USER_TOKEN_TYPE, Claims, TokenSigner
from server.storage import devices, orgs, users
from server.storage.db import Database
from server.storage.tokens import api_tokens, user_tokens

log = logging.getLogger(__name__)

Access = options_pb2.Access

# How long a login token's user is taken to exist without asking the database again: a
# deleted account's access tokens stop working at most this long after the deletion.
ACCESS_USER_CACHE_SECONDS = 5.0
ACCESS_USER_CACHE_SIZE = 10_000
# How long a push token's device is taken to exist without asking the database again: a
# deleted device's pushes stop at most this long after the deletion (they fail to store,
# answered 503, until then).
PUSH_TOKEN_CACHE_SECONDS = 5.0
PUSH_TOKEN_CACHE_SIZE = 100_000
#: The schemes a device may put before its push token (case-insensitive).
PUSH_SCHEMES = frozenset({"bearer", "token"})
# Tolerance between the clock that signed a token and the one that stored the account.
CLOCK_SKEW = timedelta(seconds=5)


def split_authorization(header: str) -> tuple[str, str]:
    """("bearer", "<token>") from "Bearer <token>"; the scheme is case-insensitive."""
    scheme, _, credential = header.strip().partition(" ")
    credential = credential.strip()
    if not scheme or not credential:
        raise Unauthenticated("malformed Authorization header")
    return scheme.lower(), credential


def stored_permissions(raw: object, token_id: str) -> tuple[Permission, ...] | None:
    """A stored token's grants, read with the parser that admitted them (None: full access).

    Storage refuses bad shapes before writing, so a failure here means a row written some
    other way: that token is refused (logged), never taken for more than it says.
    """
    try:
        return permissions.stored_permissions(raw)
    except InvalidArgument as error:
        log.warning("user token %s has unusable permissions: %s", token_id, error.message)
        raise Unauthenticated("invalid token") from None


class Authenticator:
    """Checks credentials against the signer and storage: at most one database trip a call."""

    def __init__(
        self, database: Database, signer: TokenSigner, clock: Callable[[], datetime]
    ) -> None:
        self._db = database
        self._signer = signer
        self._clock = clock
        # Read and written only on the event loop's thread, so no lock is needed.
        self._access_users: TTLCache[str, tuple[UserPrincipal, datetime]] = TTLCache(
            maxsize=ACCESS_USER_CACHE_SIZE, ttl=ACCESS_USER_CACHE_SECONDS
        )
        # Keyed by the token's hash, so no push token is kept in memory in the clear.
        self._push_devices: TTLCache[str, DevicePrincipal] = TTLCache(
            maxsize=PUSH_TOKEN_CACHE_SIZE, ttl=PUSH_TOKEN_CACHE_SECONDS
        )

    async def authenticate(self, metadata: Mapping[str, str], access: int) -> Principal | None:
        """The principal for an rpc of the given access level (None for public rpcs)."""
        if access == Access.ACCESS_PUBLIC:
            return None
        if access == Access.ACCESS_ORGANIZATION:
            return await self._organization(metadata)
        if access in (Access.ACCESS_USER, Access.ACCESS_UNSPECIFIED):
            return await self._user(metadata, device_tokens=False)
        if access == Access.ACCESS_USER_OR_DEVICE_TOKEN:
            return await self._user(metadata, device_tokens=True)
        if access == Access.ACCESS_DEVICE:
            return await self._device(metadata)
        raise Unauthenticated("this rpc does not accept these credentials")

    async def _organization(self, metadata: Mapping[str, str]) -> OrganizationPrincipal:
        org_id = metadata.get("organization-id", "").strip()
        api_key = metadata.get("organization-api-key", "").strip()
        if not org_id or not api_key:
            raise Unauthenticated("ORGANIZATION-ID and ORGANIZATION-API-KEY headers are required")
        org = await self._db.run(lambda s: orgs.authenticate_org(s, org_id, api_key))
        return OrganizationPrincipal(org_id=org.id)

    async def _user(self, metadata: Mapping[str, str], *, device_tokens: bool) -> UserPrincipal:
        """The user behind the Authorization header; a device token only if `device_tokens`
        (it never manages anything: devices, tokens and accounts need the user's own)."""
        header = metadata.get("authorization")
        if not header:
            raise Unauthenticated("authentication credentials were not provided")
        scheme, credential = split_authorization(header)
        now = self._clock()
        if scheme == "apitoken":
            return await self._db.run(lambda s: self._api_token_user(s, credential, now))
        if scheme == "bearer":
            claims = self._signer.verify(credential, now)
            if claims.device is not None:
                if not device_tokens:
                    raise Unauthenticated("a device token cannot be used here")
                return await self._db.run(
                    lambda s: caller_principal(s, self._signer, credential, claims, now)
                )
            if claims.username is None:
                # A refresh token (no usr claim) grants nothing but new tokens.
                raise Unauthenticated("invalid token")
            if claims.token_type == USER_TOKEN_TYPE:
                return await self._db.run(lambda s: self._user_token_user(s, claims, now))
            return await self._access_token_user(claims)
        raise Unauthenticated("unsupported authorization scheme: use Bearer or APIToken")

    async def _device(self, metadata: Mapping[str, str]) -> DevicePrincipal:
        """The device whose push token the Authorization header carries.

        Pushes are the hottest authenticated path (every batch of every device), so a known
        token's device is cached for a few seconds: one SHA-256 and no database trip.
        """
        header = metadata.get("authorization")
        if not header:
            raise Unauthenticated("authentication credentials were not provided")
        scheme, credential = split_authorization(header)
        if scheme not in PUSH_SCHEMES:
            raise Unauthenticated("unsupported authorization scheme: use Bearer or token")
        key = hash_secret(credential)
        device = self._push_devices.get(key)
        if device is None:
            device = await self._db.run(lambda s: self._push_device(s, credential))
            self._push_devices[key] = device
        unit_id = metadata.get("unit-id")
        if unit_id is not None and _uuid_text(unit_id) != device.unit_id:
            raise Unauthenticated("the unit-id header does not match the push token's device")
        return device

    @staticmethod
    def _push_device(session: Session, push_token: str) -> DevicePrincipal:
        device = devices.authenticate_push_token(session, push_token)
        return DevicePrincipal(
            device_pk=device.id,
            user_id=device.user_id,
            device_id=device.device_id,
            unit_id=device.unit_id,
        )

    @staticmethod
    def _api_token_user(session: Session, secret: str, now: datetime) -> UserPrincipal:
        user = api_tokens.authenticate_api_token(session, secret, now)
        return UserPrincipal(user_id=user.id, username=user.username, credential="api_token")

    async def _access_token_user(self, claims: Claims) -> UserPrincipal:
        """The user of a login/OAuth access token.

        Such tokens are stateless (signature and expiry were just checked); only the user's
        existence needs the database, and that answer is cached for a few seconds, which
        takes a database trip off the most common call. A token issued before its user was
        created belongs to an earlier account of the same name and is refused.
        """
        username = claims.username or ""
        known = self._access_users.get(username)
        if known is None:
            known = await self._db.run(lambda s: self._existing_user(s, username))
            self._access_users[username] = known
        principal, create_time = known
        if claims.issue_time < create_time - CLOCK_SKEW:
            raise Unauthenticated("invalid token")
        return principal

    @staticmethod
    def _existing_user(session: Session, username: str) -> tuple[UserPrincipal, datetime]:
        user = users.get_user_by_username(session, username)
        if user is None:  # The account is gone; its tokens died with it.
            raise Unauthenticated("invalid token")
        return UserPrincipal(user_id=user.id, username=user.username), user.create_time

    @staticmethod
    def _user_token_user(session: Session, claims: Claims, now: datetime) -> UserPrincipal:
        """The user of a user-defined token: revocable, so checked in storage every time."""
        if claims.jti is None or claims.username is None:
            raise Unauthenticated("invalid token")
        user = users.get_user_by_username(session, claims.username)
        if user is None:
            raise Unauthenticated("invalid token")
        token = user_tokens.get_active_access_token(session, claims.jti, now)
        if token.user_id != user.id:
            raise Unauthenticated("invalid token")
        return UserPrincipal(
            user_id=user.id,
            username=user.username,
            permissions=stored_permissions(token.permissions, token.id),
            credential="user_token",
        )


def _uuid_text(value: str) -> str | None:
    """A UUID in its canonical text (as unit ids are stored), or None when it is not one."""
    try:
        return str(uuid.UUID(value.strip()))
    except ValueError:
        return None
