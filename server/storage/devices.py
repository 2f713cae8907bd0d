"""Devices: a Thinger ``device`` id unique per owner, an AutoPi ``unit_id`` unique overall."""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from server.clock import utc_now
from server.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    Unauthenticated,
)
from server.security.hashing import hash_password, hash_secret, new_secret, verify_password
from server.storage.models import Device, User

__all__ = [
    "DEVICE_ID_RE",
    "add_device",
    "authenticate_device",
    "authenticate_push_token",
    "create_device",
    "delete_device",
    "device_connected",
    "get_device",
    "list_devices",
    "rotate_push_token",
    "validate_device_id",
]

DEVICE_ID_RE = re.compile(r"[a-zA-Z0-9_]{1,25}")
MAX_DESCRIPTION_LENGTH = 1024
MAX_CREDENTIALS_LENGTH = 1024
INVALID_DEVICE = "invalid device credentials"
DEVICE_CONNECTED = "device {device!r} is connected: disconnect it before deleting it"
DEVICE_LIMIT = "the account has reached its limit of {limit} devices"


def validate_device_id(device_id: str) -> str:
    """`device_id` if it follows Thinger's rule; else InvalidArgument naming the rule."""
    if not isinstance(device_id, str) or not DEVICE_ID_RE.fullmatch(device_id):
        raise InvalidArgument(
            f"invalid device id {device_id!r}: use 1 to 25 letters, digits or underscores"
        )
    return device_id


def _normalize_unit_id(unit_id: str | None) -> str:
    if unit_id is None or unit_id == "":
        return str(uuid.uuid4())
    try:
        return str(uuid.UUID(unit_id))
    except (ValueError, AttributeError, TypeError) as exc:
        raise InvalidArgument(f"invalid unit_id {unit_id!r}: must be a UUID") from exc


def create_device(
    s: Session,
    user_id: int,
    device_id: str,
    credentials: str,
    description: str = "",
    unit_id: str | None = None,
) -> tuple[Device, str]:
    """Register a device; returns it and its push token (AutoPi "Auth Token"), shown once.

    Raises InvalidArgument for a bad id, unit_id or empty credentials, NotFound for an unknown
    user, AlreadyExists for a device id the user already has or a unit_id already in use.
    """
    validate_device_id(device_id)
    unit_id = _normalize_unit_id(unit_id)
    if not credentials:
        raise InvalidArgument("credentials must not be empty")
    if len(credentials) > MAX_CREDENTIALS_LENGTH:
        raise InvalidArgument(f"credentials must be at most {MAX_CREDENTIALS_LENGTH} characters")
    description = description or ""
    if len(description) > MAX_DESCRIPTION_LENGTH:
        raise InvalidArgument(f"description must be at most {MAX_DESCRIPTION_LENGTH} characters")
    if s.get(User, user_id) is None:
        raise NotFound(f"user {user_id} not found")
    if s.scalar(
        sa.select(Device.id).where(Device.user_id == user_id, Device.device_id == device_id)
    ):
        raise AlreadyExists(f"device {device_id!r} already exists")
    if s.scalar(sa.select(Device.id).where(Device.unit_id == unit_id)):
        raise AlreadyExists(f"unit_id {unit_id} is already in use")
    push_token = new_secret()
    device = Device(
        user_id=user_id,
        device_id=device_id,
        unit_id=unit_id,
        description=description,
        credentials_hash=hash_password(credentials),
        push_token_hash=hash_secret(push_token),
        create_time=utc_now(),
        connected=False,
        rx_bytes=0,
        tx_bytes=0,
    )
    s.add(device)
    try:
        s.flush()
    except IntegrityError as exc:  # lost a race with a concurrent create
        raise AlreadyExists(f"device {device_id!r} or unit_id {unit_id} already exists") from exc
    return device, push_token


def get_device(s: Session, user_id: int, device_id: str) -> Device:
    """The user's device by its device id; NotFound (also for other users' devices, and for
    ids no device can have, which never reach SQL: PostgreSQL refuses a NUL in text)."""
    if not isinstance(device_id, str) or not DEVICE_ID_RE.fullmatch(device_id):
        raise NotFound(f"device {device_id!r} not found")
    device = s.scalar(
        sa.select(Device).where(Device.user_id == user_id, Device.device_id == device_id)
    )
    if device is None:
        raise NotFound(f"device {device_id!r} not found")
    return device


def find_by_unit_id(s: Session, user_id: int, unit_id: str) -> Device | None:
    """The user's device with this unit id (a UUID, any case); None for anything else,
    other users' devices included, so that the caller answers both alike (AIP-193)."""
    try:
        normalized = str(uuid.UUID(unit_id))
    except (TypeError, ValueError):
        return None
    return s.scalar(
        sa.select(Device).where(Device.user_id == user_id, Device.unit_id == normalized)
    )


def list_devices(s: Session, user_id: int, device_id: str | None = None) -> Sequence[Device]:
    """The user's devices, ordered by device id; only ``device_id`` when it is given.

    InvalidArgument when ``device_id`` breaks the id rule (Thinger's 400 for a bad search).
    """
    query = sa.select(Device).where(Device.user_id == user_id)
    if device_id is not None:
        query = query.where(Device.device_id == validate_device_id(device_id))
    return s.scalars(query.order_by(Device.device_id)).all()


def _lock_owner(s: Session, user_id: int) -> None:
    """Serialise the unit of work against every other one that adds a device for the user.

    A no-op UPDATE of the owner's row: on PostgreSQL it takes the row's lock until commit;
    on SQLite, being the unit of work's first statement, it takes the database's write lock
    (a later upgrade from a read snapshot could fail instead of waiting). Either way a
    concurrent add waits here, and then counts the devices this one added.
    """
    locked = s.execute(sa.update(User).where(User.id == user_id).values(timezone=User.timezone))
    if not getattr(locked, "rowcount", 0):
        raise NotFound(f"user {user_id} not found")


def add_device(
    s: Session,
    user_id: int,
    device_id: str,
    credentials: str,
    description: str,
    max_devices: int,
) -> Device:
    """Add a device unless the user already has ``max_devices`` (0: no limit).

    Must be the first statement of its unit of work (see `_lock_owner`), so that two adds at
    the limit never both succeed, on either backend. Raises what `create_device` raises, and
    InvalidArgument at the limit.
    """
    validate_device_id(device_id)
    if not credentials:
        raise InvalidArgument("device_credentials is required")
    _lock_owner(s, user_id)
    if max_devices > 0:
        count = s.scalar(
            sa.select(sa.func.count()).select_from(Device).where(Device.user_id == user_id)
        )
        if (count or 0) >= max_devices:
            raise InvalidArgument(DEVICE_LIMIT.format(limit=max_devices))
    device, _push_token = create_device(s, user_id, device_id, credentials, description)
    return device


def device_connected(device_id: str) -> FailedPrecondition:
    """The refusal to delete a connected device (Thinger's 400)."""
    return FailedPrecondition(DEVICE_CONNECTED.format(device=device_id))


def delete_device(s: Session, user_id: int, device_id: str) -> None:
    """Delete the user's device, with its tokens and link secret (the rows cascade).

    NotFound for an unknown device (or another user's); FailedPrecondition while it is
    connected, checked in the DELETE itself so that a link attaching meanwhile wins.
    """
    device = get_device(s, user_id, device_id)
    if device.connected:
        raise device_connected(device_id)
    deleted = s.execute(
        sa.delete(Device).where(Device.id == device.id, Device.connected.is_(False))
    )
    if not getattr(deleted, "rowcount", 0):
        raise device_connected(device_id)


def authenticate_device(s: Session, user_id: int, device_id: str, credentials: str) -> Device:
    """The device if ``credentials`` match (argon2, constant time); else Unauthenticated.

    An unknown device costs the same as a wrong password, so timing reveals nothing.
    """
    device = s.scalar(
        sa.select(Device).where(Device.user_id == user_id, Device.device_id == device_id)
    )
    ok = verify_password(device.credentials_hash if device else None, credentials)
    if not ok or device is None:
        raise Unauthenticated(INVALID_DEVICE)
    return device


def rotate_push_token(s: Session, user_id: int, device_id: str) -> tuple[Device, str]:
    """Give the user's device a new push token and return it, shown once.

    The old token stops opening pushes (the server's push-token cache may honour it for a
    few more seconds, docs/telemetry-ingest.md). It is how an operator recovers a lost token,
    and how a device added through the Devices API, whose token nobody saw, gets one.
    """
    device = get_device(s, user_id, device_id)
    push_token = new_secret()
    device.push_token_hash = hash_secret(push_token)
    s.flush()
    return device, push_token


def authenticate_push_token(s: Session, push_token: str) -> Device:
    """The device whose push token (AutoPi ``authorization: token X``) this is."""
    device = s.scalar(sa.select(Device).where(Device.push_token_hash == hash_secret(push_token)))
    if device is None:
        raise Unauthenticated("invalid push token")
    return device
