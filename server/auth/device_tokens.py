"""Device tokens as credentials: checked against storage on every use, for calls and links.

A device token (docs/design.md, "Device tokens") is honoured only while its row exists, is
not expired and its device exists; and only as the exact token the row describes: the
stored claims are signed again with the row's key and compared in constant time with the
token presented, so a token whose claims were altered, or which was signed with a key the
row no longer names, is refused even if its signature verifies.

A token has one purpose, fixed when it is issued and part of its signed claims: a caller's
token (the Devices API's) reads and calls its device and never opens the link; a link token
(``"lnk": true``, only from the operator's `thingwire device token`) opens its device's link
and calls nothing. So a token handed to a dashboard can never stand in for the device.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from server.auth.principal import DEFAULT_ACTIONS, Permission, UserPrincipal
from server.errors import Unauthenticated
from server.security.hashing import secrets_equal
from server.security.jwt_tokens import Claims, TokenSigner
from server.storage.devices import INVALID_DEVICE
from server.storage.models import Device, DeviceToken
from server.storage.tokens.device_tokens import ActiveDeviceToken, get_active_device_token

__all__ = [
    "DEVICE_TOKEN_CREDENTIAL",
    "LINK_TOKEN_REFUSED",
    "caller_principal",
    "check_device_token",
    "device_principal",
    "open_link_with_token",
    "sign_stored",
]

#: `UserPrincipal.credential` of a device token.
DEVICE_TOKEN_CREDENTIAL = "device_token"  # noqa: S105 - a label, not a secret
#: The answer to a link token presented as a caller's credential.
LINK_TOKEN_REFUSED = "a device's link token only opens its link"  # noqa: S105 - a message


def sign_stored(
    signer: TokenSigner, token: DeviceToken, username: str, device_id: str, now: datetime
) -> tuple[str, str]:
    """The token a row describes, and the id of the key that signed it (see
    `TokenSigner.device_token`)."""
    return signer.device_token(
        username,
        device_id,
        token.id,
        token.create_time,
        token.expire_time,
        list(token.resources) or None,
        token.kid,
        now,
        link=token.link,
    )


def check_device_token(
    session: Session, signer: TokenSigner, presented: str, claims: Claims, now: datetime
) -> ActiveDeviceToken:
    """The stored token behind verified ``claims`` of a device token; else Unauthenticated."""
    if claims.device is None or claims.jti is None or claims.username is None:
        raise Unauthenticated("invalid token")
    active = get_active_device_token(session, claims.jti, now)
    expected, _kid = sign_stored(
        signer, active.token, active.owner.username, active.device.device_id, now
    )
    if not secrets_equal(expected, presented):
        raise Unauthenticated("invalid token")
    return active


def caller_principal(
    session: Session, signer: TokenSigner, presented: str, claims: Claims, now: datetime
) -> UserPrincipal:
    """The principal of a caller's device token; Unauthenticated for any other, a link
    token included: it is the device's own identity, not a caller's (fail closed)."""
    active = check_device_token(session, signer, presented, claims, now)
    if active.token.link:
        raise Unauthenticated(LINK_TOKEN_REFUSED)
    return device_principal(active)


def device_principal(active: ActiveDeviceToken) -> UserPrincipal:
    """The principal of a device token: its owner, limited to reading and calling its device
    (and to its resources, when it names some)."""
    grant = Permission(
        device=active.device.device_id,
        resources=frozenset(active.token.resources),
        actions=DEFAULT_ACTIONS,
    )
    return UserPrincipal(
        user_id=active.owner.id,
        username=active.owner.username,
        permissions=(grant,),
        credential=DEVICE_TOKEN_CREDENTIAL,
    )


def open_link_with_token(
    session: Session,
    signer: TokenSigner,
    username: str,
    device_id: str,
    presented: str,
    now: datetime,
) -> tuple[Device, str]:
    """The device whose link a Hello opens with a device token, and the token's id (its
    deletion closes the link it opened); else Unauthenticated.

    The token must be a live link token (issued for the link, ``"lnk": true``) of exactly
    this user and device, naming no resources: a caller's token, made to read or call the
    device, must never be the device (docs/device-link.md). Every refusal is the link's one
    answer, "invalid device credentials".
    """
    try:
        claims = signer.verify(presented, now)
        active = check_device_token(session, signer, presented, claims, now)
    except Unauthenticated:
        raise Unauthenticated(INVALID_DEVICE) from None
    if (
        not active.token.link
        or active.owner.username != username
        or active.device.device_id != device_id
        or active.token.resources
    ):
        raise Unauthenticated(INVALID_DEVICE)
    return active.device, active.token.id
