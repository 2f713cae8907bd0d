"""Devices: a Thinger ``device`` id unique per owner, an AutoPi ``unit_id`` unique overall."""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from server.clock import utc_now
from server.errors import AlreadyExists, InvalidArgument, NotFound, Unauthenticated
from server.security.hashing import hash_password, hash_secret, new_secret, verify_password
from server.storage.models import Device, User

__all__ = [
    "DEVICE_ID_RE",
    "authenticate_device",
    "authenticate_push_token",
    "create_device",
    "get_device",
    "list_devices",
]

DEVICE_ID_RE = re.compile(r"[a-zA-Z0-9_]{1,25}")
MAX_DESCRIPTION_LENGTH = 1024
MAX_CREDENTIALS_LENGTH = 1024
INVALID_DEVICE = "invalid device credentials"


def _validate_device_id(device_id: str) -> str:
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
    _validate_device_id(device_id)
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
    """The user's device by its device id; NotFound (also for other users' devices)."""
    device = s.scalar(
        sa.select(Device).where(Device.user_id == user_id, Device.device_id == device_id)
    )
    if device is None:
        raise NotFound(f"device {device_id!r} not found")
    return device


def list_devices(s: Session, user_id: int) -> Sequence[Device]:
    """The user's devices, ordered by device id."""
    return s.scalars(
        sa.select(Device).where(Device.user_id == user_id).order_by(Device.device_id)
    ).all()


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


def authenticate_push_token(s: Session, push_token: str) -> Device:
    """The device whose push token (AutoPi ``authorization: token X``) this is."""
    device = s.scalar(sa.select(Device).where(Device.push_token_hash == hash_secret(push_token)))
    if device is None:
        raise Unauthenticated("invalid push token")
    return device
