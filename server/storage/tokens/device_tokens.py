"""Thinger device tokens: JWTs for one device, whose ``jti`` names a row of ``device_tokens``.

The row holds the token's claims (device, resources, issue and expiry times) and the id of
the key that signed it, never the token: the list shows a token by signing the stored
claims again (docs/design.md, "Device tokens"). ``link`` marks a link token (the
operator's, which opens the device's link) apart from a caller's token. Deleting the row
(or its device, which cascades) revokes the token at once, since every use is checked here.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Session

from server.auth.permissions import MAX_ENTRIES, MAX_RESOURCE_LENGTH
from server.clock import utc_now
from server.errors import InvalidArgument, NotFound, Unauthenticated
from server.storage.devices import get_device
from server.storage.models import Device, DeviceToken, User
from server.storage.tokens._rules import active, future_expiry, validate_token_name

__all__ = [
    "ALL_RESOURCES",
    "ActiveDeviceToken",
    "create_device_token",
    "delete_device_token",
    "get_active_device_token",
    "list_device_tokens",
    "parse_token_resources",
    "set_token_kid",
]

ALL_RESOURCES = None
"""The resources of a token that names none: every resource of its device (no ``res``)."""
INVALID_TOKEN = "invalid token"  # noqa: S105 - a message, not a secret
#: What every token id is (12 random bytes in hex); nothing else reaches SQL.
TOKEN_ID_RE = re.compile(r"[0-9a-f]{24}")


def parse_token_resources(raw: object = ALL_RESOURCES) -> list[str] | None:
    """The resources a client sent, as JSON; `ALL_RESOURCES` only when it sent none.

    A list of 1 to `MAX_ENTRIES` names of 1 to `MAX_RESOURCE_LENGTH` characters, repeats
    dropped, order kept. An empty list or any other shape (a JSON null arrives as something
    other than None: the servicer passes it through) is refused, so that nothing dropped on
    the way can widen a token to every resource.
    """
    if raw is ALL_RESOURCES:
        return ALL_RESOURCES
    if not isinstance(raw, list) or not all(isinstance(r, str) for r in raw):
        raise InvalidArgument("token_resources must be a list of resource names")
    if not raw:
        raise InvalidArgument(
            "token_resources must name at least one resource; leave it out for every resource"
        )
    if len(raw) > MAX_ENTRIES:
        raise InvalidArgument(f"token_resources may name at most {MAX_ENTRIES} resources")
    if any(not r or len(r) > MAX_RESOURCE_LENGTH for r in raw):
        raise InvalidArgument(
            f"token_resources must be names of 1 to {MAX_RESOURCE_LENGTH} characters"
        )
    return list(dict.fromkeys(raw))


def create_device_token(
    s: Session,
    user_id: int,
    device_id: str,
    name: str,
    resources: object,
    expire_time: datetime | None,
    now: datetime,
    kid: str,
    *,
    link: bool = False,
) -> DeviceToken:
    """Record a token for the user's device, signed with key ``kid``; its id is the ``jti``.

    ``resources`` is the JSON the client sent (see `parse_token_resources`). ``link`` makes
    a link token, which opens the device's link and calls nothing; it names no resources
    (a link serves them all). NotFound for an unknown device; InvalidArgument for a bad
    name or resources, or a past expiry.
    """
    now = utc_now(now)
    name = validate_token_name(name)
    chosen = parse_token_resources(resources)
    if link and chosen is not ALL_RESOURCES:
        raise InvalidArgument("a link token names no resources: a link serves them all")
    expire_time = future_expiry(expire_time, now, "token_expiration")
    device = get_device(s, user_id, device_id)
    token = DeviceToken(
        id=secrets.token_hex(12),
        device_pk=device.id,
        name=name,
        resources=chosen or [],
        create_time=now,
        expire_time=expire_time,
        kid=kid,
        link=link,
    )
    s.add(token)
    s.flush()
    return token


def list_device_tokens(s: Session, user_id: int, device_id: str) -> Sequence[DeviceToken]:
    """The tokens of the user's device, oldest first; NotFound for an unknown device."""
    device = get_device(s, user_id, device_id)
    return s.scalars(
        sa.select(DeviceToken)
        .where(DeviceToken.device_pk == device.id)
        .order_by(DeviceToken.create_time, DeviceToken.id)
    ).all()


def set_token_kid(s: Session, token_id: str, kid: str) -> None:
    """Record that the token is now signed with key ``kid`` (its old key stopped verifying)."""
    s.execute(sa.update(DeviceToken).where(DeviceToken.id == token_id).values(kid=kid))


def delete_device_token(s: Session, user_id: int, device_id: str, token_id: str) -> None:
    """Delete a token of the user's device; NotFound for an unknown device or token."""
    device = get_device(s, user_id, device_id)
    if not TOKEN_ID_RE.fullmatch(token_id):
        raise NotFound(f"token {token_id!r} not found")
    deleted = s.execute(
        sa.delete(DeviceToken).where(DeviceToken.id == token_id, DeviceToken.device_pk == device.id)
    )
    if not getattr(deleted, "rowcount", 0):
        raise NotFound(f"token {token_id!r} not found")


@dataclass(frozen=True)
class ActiveDeviceToken:
    """A token in use, with what it speaks for: its device and the device's owner."""

    token: DeviceToken
    device: Device
    owner: User


def get_active_device_token(s: Session, token_id: str, now: datetime) -> ActiveDeviceToken:
    """The token behind a JWT's ``jti``, with its device and owner, in one query.

    Unauthenticated when it is unknown, deleted (or its device is), revoked or expired.
    """
    if not TOKEN_ID_RE.fullmatch(token_id):
        raise Unauthenticated(INVALID_TOKEN)
    row = s.execute(
        sa.select(DeviceToken, Device, User)
        .join(Device, Device.id == DeviceToken.device_pk)
        .join(User, User.id == Device.user_id)
        .where(DeviceToken.id == token_id, active(DeviceToken, utc_now(now)))
    ).one_or_none()
    if row is None:
        raise Unauthenticated(INVALID_TOKEN)
    token, device, owner = row
    return ActiveDeviceToken(token, device, owner)
