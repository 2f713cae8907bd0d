"""Users: creation, lookup, and password login (throttled: see login_throttle.py).

A login is split in three so the server can run argon2 in a pool of its own: `begin_login`
(throttle check and reservation), the password check, `finish_login`. The reservation must
count even when the password turns out wrong, so `begin_login` runs in a unit of work of its
own, which commits when it returns: each caller makes that commit itself, where it can be
seen (`PasswordLogins.check`, `authenticate_password`); no function here commits.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from server.clock import utc_now
from server.errors import AlreadyExists, InvalidArgument, NotFound, Unauthenticated
from server.security.hashing import hash_password, needs_rehash, verify_password
from server.storage import login_throttle
from server.storage.db import Database
from server.storage.models import Device, User

__all__ = [
    "PROFILE",
    "USERNAME_RE",
    "LoginAttempt",
    "Profile",
    "ProfileDevice",
    "authenticate_password",
    "begin_login",
    "create_user",
    "finish_login",
    "get_user",
    "get_user_by_login",
    "get_user_by_username",
    "profile_of",
    "read_profile",
]

USERNAME_RE = re.compile(r"[a-zA-Z0-9_]{1,32}")
EMAIL_RE = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s.]+")
MAX_EMAIL_LENGTH = 254
# NIST SP 800-63B: at least 8 characters; long passphrases welcome, bounded against abuse.
MIN_PASSWORD_LENGTH = 8
MAX_PASSWORD_LENGTH = 1024
INVALID_LOGIN = "invalid username or password"


def _validate_email(email: str) -> str:
    email = email.strip().lower()
    if len(email) > MAX_EMAIL_LENGTH or not EMAIL_RE.fullmatch(email):
        raise InvalidArgument(f"invalid email address: {email!r}")
    return email


def _validate_username(username: str) -> str:
    if not USERNAME_RE.fullmatch(username):
        raise InvalidArgument(
            f"invalid username {username!r}: use 1 to 32 letters, digits or underscores"
        )
    return username


def _username_taken(s: Session, username: str) -> bool:
    return s.scalar(sa.select(User.id).where(User.username == username)) is not None


def _derive_username(s: Session, email: str) -> str:
    """The email's local part, sanitised, with a numeric suffix if it is taken."""
    base = re.sub(r"[^a-zA-Z0-9_]", "_", email.split("@", 1)[0])[:32] or "user"
    candidate, n = base, 1
    while _username_taken(s, candidate):
        n += 1
        suffix = str(n)
        candidate = base[: 32 - len(suffix)] + suffix
    return candidate


def create_user(s: Session, email: str, password: str, username: str | None = None) -> User:
    """Create an account; raises InvalidArgument for bad input, AlreadyExists for duplicates."""
    email = _validate_email(email)
    if len(password) < MIN_PASSWORD_LENGTH:
        raise InvalidArgument(f"password must be at least {MIN_PASSWORD_LENGTH} characters")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise InvalidArgument(f"password must be at most {MAX_PASSWORD_LENGTH} characters")
    if username is not None:
        _validate_username(username)
    if s.scalar(sa.select(User.id).where(User.email == email)) is not None:
        raise AlreadyExists(f"a user with email {email!r} already exists")
    if username is None:
        username = _derive_username(s, email)
    elif _username_taken(s, username):
        raise AlreadyExists(f"username {username!r} is already taken")
    user = User(
        email=email,
        username=username,
        password_hash=hash_password(password),
        timezone="UTC",
        create_time=utc_now(),
    )
    s.add(user)
    try:
        s.flush()
    except IntegrityError as exc:  # lost a race with a concurrent create
        raise AlreadyExists("a user with this email or username already exists") from exc
    return user


def get_user(s: Session, user_id: int) -> User:
    """The user with this primary key, or NotFound."""
    user = s.get(User, user_id)
    if user is None:
        raise NotFound(f"user {user_id} not found")
    return user


@dataclass(frozen=True)
class ProfileDevice:
    """One device as the user's profile lists it."""

    device_id: str
    unit_id: str
    description: str


@dataclass(frozen=True)
class Profile:
    """A user and its devices (ordered by device id): what `GET /auth/user/` shows."""

    id: int
    username: str
    email: str
    timezone: str
    devices: tuple[ProfileDevice, ...]


#: The user and its devices in one statement, a row per device (one row of NULL device
#: columns when it has none): one round trip, no ORM objects. Its columns are integers and
#: text, which need no conversion, so `LoopReads` may run it on the driver directly.
PROFILE = (
    sa.select(
        User.id,
        User.username,
        User.email,
        User.timezone,
        Device.device_id,
        Device.unit_id,
        Device.description,
    )
    .select_from(User)
    .outerjoin(Device, Device.user_id == User.id)
    .where(User.id == sa.bindparam("user_id"))
    .order_by(Device.device_id)
)


def profile_of(rows: Sequence[Sequence[Any]], user_id: int) -> Profile:
    """The profile in the rows of `PROFILE`, or NotFound when there are none."""
    if not rows:
        raise NotFound(f"user {user_id} not found")
    pk, username, email, timezone = rows[0][:4]
    devices = tuple(ProfileDevice(*row[4:]) for row in rows if row[4] is not None)
    return Profile(pk, username, email, timezone, devices)


def read_profile(connection: sa.Connection | Session, user_id: int) -> Profile:
    """The user with this primary key and its devices, or NotFound."""
    return profile_of(connection.execute(PROFILE, {"user_id": user_id}).all(), user_id)


def get_user_by_username(s: Session, username: str) -> User | None:
    """The user with exactly this user name (as tokens carry it), else None."""
    return s.scalar(sa.select(User).where(User.username == username))


def get_user_by_login(s: Session, login: str) -> User | None:
    """The user whose email (any case) or username equals ``login``, else None."""
    login = login.strip()
    if "@" in login:
        return s.scalar(sa.select(User).where(User.email == login.lower()))
    return s.scalar(sa.select(User).where(User.username == login))


@dataclass(frozen=True)
class LoginAttempt:
    """A reserved login attempt: the account it names, if any, and what it was charged to."""

    user_id: int | None
    password_hash: str | None
    reservation: login_throttle.Reservation


def begin_login(
    s: Session, login: str, client: str = "", now: datetime | None = None
) -> LoginAttempt:
    """Resolve the login and reserve one attempt against the throttle.

    Raises ``Throttled`` while the (client, account) pair or the account is locked, before
    any password is checked. Run it in a unit of work of its own and let that commit before
    the password is checked: a wrong password then stays counted although the unit of work
    of `finish_login` raises.
    """
    now = utc_now(now)
    user = get_user_by_login(s, login) if len(login) <= MAX_EMAIL_LENGTH else None
    user_id = user.id if user is not None else None
    keys = login_throttle.keys_for(login_throttle.account_of(user_id, login), client)
    reservation = login_throttle.reserve(s, keys, now)
    return LoginAttempt(user_id, user.password_hash if user is not None else None, reservation)


def finish_login(s: Session, attempt: LoginAttempt, password_ok: bool, password: str) -> User:
    """The user, when the password was right (the attempt is forgiven); else Unauthenticated."""
    if not password_ok or attempt.user_id is None:
        raise Unauthenticated(INVALID_LOGIN)
    login_throttle.forgive(s, attempt.reservation)
    user = get_user(s, attempt.user_id)
    if needs_rehash(user.password_hash):
        user.password_hash = hash_password(password)
    s.flush()
    return user


def withdraw_login(s: Session, attempt: LoginAttempt) -> None:
    """Undo the reservation of an attempt that was cancelled before its answer: no lock or
    failure is left by a check nobody learnt the result of."""
    login_throttle.withdraw(s, attempt.reservation)


def authenticate_password(
    database: Database, login: str, password: str, now: datetime | None = None, client: str = ""
) -> User:
    """Check a login (email or username) and password synchronously, in two units of work.

    The first (`begin_login`) commits the reservation; the second (`finish_login`) forgives
    it when the password was right. Raises ``Throttled`` while locked and
    ``Unauthenticated`` on a wrong login or password, which stays counted.
    """
    attempt = database.call(lambda s: begin_login(s, login, client, now))
    ok = verify_password(attempt.password_hash, password)
    return database.call(lambda s: finish_login(s, attempt, ok, password))
