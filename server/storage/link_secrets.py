"""Opening a device link: credentials once (argon2), then a link secret (one SHA-256).

Argon2 on every reconnect would make a fleet's reconnect storm cost minutes of CPU, so the
first open with credentials issues a random link secret, stored only as its SHA-256, which
later opens present (docs/device-link.md). Issuing a new one replaces the old; revoking
clears it, and the device must then open with its credentials again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.orm import Session

from server.errors import Unauthenticated
from server.security.hashing import hash_secret, new_secret, secrets_equal, verify_password
from server.storage.devices import DEVICE_ID_RE, INVALID_DEVICE, authenticate_device
from server.storage.models import Device, User
from server.storage.users import get_user_by_username

__all__ = [
    "LinkDevice",
    "credentials_of",
    "issue_link_secret",
    "open_many_with_link_secrets",
    "open_with_credentials",
    "open_with_link_secret",
    "revoke_link_secret",
]


def _possible(username: str, device_id: str) -> bool:
    """Whether a device could have these names. Others never reach SQL: PostgreSQL refuses
    a NUL in text, which would end the stream INTERNAL instead of UNAUTHENTICATED."""
    return "\x00" not in username and DEVICE_ID_RE.fullmatch(device_id) is not None


def _owner(s: Session, username: str) -> User | None:
    return get_user_by_username(s, username) if username else None


def open_with_credentials(
    s: Session, username: str, device_id: str, credentials: str
) -> tuple[Device, str]:
    """The device and a new link secret (shown once) if its credentials match.

    Unauthenticated otherwise; an unknown user costs an argon2 check like a wrong password.
    """
    if not _possible(username, device_id):
        verify_password(None, credentials)  # the same cost as any other refusal
        raise Unauthenticated(INVALID_DEVICE)
    user = _owner(s, username)
    device = authenticate_device(s, user.id if user else -1, device_id, credentials)
    secret = new_secret()
    device.link_secret_hash = hash_secret(secret)
    s.flush()
    return device, secret


def credentials_of(s: Session, username: str, device_id: str) -> tuple[int, str] | None:
    """The device's row id and credentials hash, for a check made outside the unit of work
    (argon2 off the database's worker pool); None for a device that does not exist."""
    if not _possible(username, device_id):
        return None
    row = s.execute(
        sa.select(Device.id, Device.credentials_hash)
        .join(User, User.id == Device.user_id)
        .where(User.username == username, Device.device_id == device_id)
    ).first()
    return (row[0], row[1]) if row is not None else None


def issue_link_secret(s: Session, device_pk: int) -> tuple[Device, str]:
    """The device, with a new link secret (shown once) replacing any before it; its
    credentials were checked already. Unauthenticated if it was deleted meanwhile."""
    device = s.get(Device, device_pk)
    if device is None:
        raise Unauthenticated(INVALID_DEVICE)
    secret = new_secret()
    device.link_secret_hash = hash_secret(secret)
    s.flush()
    return device, secret


def open_with_link_secret(s: Session, username: str, device_id: str, secret: str) -> Device:
    """The device if ``secret`` is its current link secret; else Unauthenticated."""
    if not _possible(username, device_id):
        raise Unauthenticated(INVALID_DEVICE)
    device = s.scalar(
        sa.select(Device)
        .join(User, User.id == Device.user_id)
        .where(User.username == username, Device.device_id == device_id)
    )
    stored = device.link_secret_hash if device is not None else None
    if device is None or stored is None or not secrets_equal(stored, hash_secret(secret)):
        raise Unauthenticated(INVALID_DEVICE)
    return device


@dataclass(frozen=True)
class LinkDevice:
    """What a link needs of its device: its row id, its owner, its id and its unit id (the
    Welcome tells the device its unit id, for its Local API)."""

    pk: int
    user_id: int
    device_id: str
    unit_id: str = ""


def open_many_with_link_secrets(
    s: Session, hellos: Sequence[tuple[str, str, str]]
) -> list[LinkDevice | None]:
    """For each (user name, device id, link secret), the device if the secret is its
    current link secret, else None: one query for them all, so that a fleet reconnecting
    at once costs one database round trip per batch instead of one per device."""
    wanted = {(user, device) for user, device, _ in hellos if _possible(user, device)}
    found: dict[tuple[str, str], tuple[LinkDevice, str | None]] = {}
    if wanted:
        rows = s.execute(
            sa.select(
                User.username,
                Device.device_id,
                Device.id,
                Device.user_id,
                Device.unit_id,
                Device.link_secret_hash,
            )
            .join(User, User.id == Device.user_id)
            .where(sa.tuple_(User.username, Device.device_id).in_(sorted(wanted)))
        )
        for username, device_id, pk, user_id, unit_id, stored in rows:
            found[(username, device_id)] = (LinkDevice(pk, user_id, device_id, unit_id), stored)
    opened: list[LinkDevice | None] = []
    for user, device, secret in hellos:
        device_row, stored = found.get((user, device), (None, None))
        if stored is not None and secrets_equal(stored, hash_secret(secret)):
            opened.append(device_row)
        else:
            opened.append(None)
    return opened


def revoke_link_secret(s: Session, device_pk: int) -> None:
    """Forget the device's link secret: its next open needs the credentials."""
    s.execute(sa.update(Device).where(Device.id == device_pk).values(link_secret_hash=None))
