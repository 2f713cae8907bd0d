"""Users: creation, lookup, and password login with a database-backed throttle.

Login throttling is keyed by the normalised login (lower-cased), whether or not the account
exists, so the answers (and their timing) do not reveal which accounts exist. The state lives
in ``login_throttle`` so every replica sharing the database enforces the same limits.
"""

from __future__ import annotations

import math
import re
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from server.errors import AlreadyExists, InvalidArgument, NotFound, Throttled, Unauthenticated
from server.security.hashing import hash_password, needs_rehash, verify_password
from server.storage._common import insert_ignore, utcnow
from server.storage.models import LoginThrottle, User

__all__ = [
    "LOCK_BASE",
    "LOCK_MAX",
    "MAX_FAILURES",
    "USERNAME_RE",
    "WINDOW",
    "authenticate_password",
    "create_user",
    "get_user",
    "get_user_by_login",
    "normalize_login",
    "prune_login_throttle",
]

# Login throttle policy: MAX_FAILURES failed attempts within WINDOW lock the key for
# LOCK_BASE; every further failure doubles the lock, up to LOCK_MAX. Locks expire by
# themselves. The counter restarts once WINDOW has passed since the first failure, unless the
# key was locked within the last WINDOW (then escalation continues).
MAX_FAILURES = 5
WINDOW = timedelta(minutes=15)
LOCK_BASE = timedelta(seconds=30)
LOCK_MAX = timedelta(minutes=15)

USERNAME_RE = re.compile(r"[a-zA-Z0-9_]{1,32}")
EMAIL_RE = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s.]+")
MAX_EMAIL_LENGTH = 254
# NIST SP 800-63B: at least 8 characters; long passphrases welcome, bounded against abuse.
MIN_PASSWORD_LENGTH = 8
MAX_PASSWORD_LENGTH = 1024
INVALID_LOGIN = "invalid username or password"


def normalize_login(login: str) -> str:
    """The lookup form of a login: stripped and lower-cased."""
    return login.strip().lower()


def throttle_key(user: User | None, login: str) -> str:
    """The throttle row of a login attempt: one per account, however it is named.

    An account's email and username share one key, so naming it both ways does not double
    the guesses allowed; an unknown login is keyed by its text, in a separate namespace.
    """
    if user is not None:
        return f"user:{user.id}"
    return f"login:{normalize_login(login)}"[:MAX_EMAIL_LENGTH]


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
        create_time=utcnow(),
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


def get_user_by_login(s: Session, login: str) -> User | None:
    """The user whose email (any case) or username equals ``login``, else None."""
    login = login.strip()
    if "@" in login:
        return s.scalar(sa.select(User).where(User.email == login.lower()))
    return s.scalar(sa.select(User).where(User.username == login))


def _lock_for(failures: int) -> timedelta:
    extra = failures - MAX_FAILURES
    if extra < 0:
        return timedelta(0)
    # 2**extra grows fast; cap the exponent before it can overflow timedelta.
    return min(LOCK_BASE * 2 ** min(extra, 32), LOCK_MAX)


def _retry_after(locked_until: datetime, now: datetime) -> int:
    return max(1, math.ceil((locked_until - now).total_seconds()))


def authenticate_password(
    s: Session, login: str, password: str, now: datetime | None = None
) -> User:
    """Check a login (email or username) and password.

    Raises ``Throttled`` while the login is locked (without checking the password), and
    ``Unauthenticated`` on a wrong login or password. A failure is recorded and the session is
    **committed before raising**, so the count survives the caller's rollback; call this first
    in its own unit of work (``Database.run``). Success clears the counter.

    No lock is held while argon2 runs (on SQLite that would stall every writer); failures are
    then counted under a row lock, so concurrent attempts never lose a count.
    """
    now = utcnow(now)
    user = get_user_by_login(s, login) if len(login) <= MAX_EMAIL_LENGTH else None
    key = throttle_key(user, login)
    locked_until = s.scalar(sa.select(LoginThrottle.locked_until).where(LoginThrottle.key == key))
    if locked_until is not None and locked_until > now:
        retry_after = _retry_after(locked_until, now)
        raise Throttled(f"too many failed logins; retry in {retry_after} s", retry_after)

    ok = verify_password(user.password_hash if user is not None else None, password)
    if ok and user is not None:
        s.execute(sa.delete(LoginThrottle).where(LoginThrottle.key == key))
        if needs_rehash(user.password_hash):
            user.password_hash = hash_password(password)
        s.flush()
        return user

    _record_failure(s, key, now)
    s.commit()
    raise Unauthenticated(INVALID_LOGIN)


def _record_failure(s: Session, key: str, now: datetime) -> None:
    """Count one failure for ``key`` and lock it once there are enough; race-free."""
    # Insert-or-ignore makes the row exist without a race (and on SQLite opens the write
    # transaction, serialising what follows); FOR UPDATE does the same on PostgreSQL.
    insert_ignore(s, LoginThrottle, {"key": key, "failures": 0, "window_start": now})
    throttle = s.scalars(
        sa.select(LoginThrottle)
        .where(LoginThrottle.key == key)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).one()
    escalating = throttle.locked_until is not None and now - throttle.locked_until < WINDOW
    if now - throttle.window_start >= WINDOW and not escalating:
        throttle.failures = 0
        throttle.window_start = now
        throttle.locked_until = None
    throttle.failures += 1
    if throttle.failures >= MAX_FAILURES:
        throttle.locked_until = now + _lock_for(throttle.failures)
    s.flush()


def prune_login_throttle(s: Session, now: datetime | None = None) -> int:
    """Delete throttle rows that no longer affect anything (run periodically); returns count.

    Failed logins for made-up accounts create rows too; this keeps the table small.
    """
    now = utcnow(now)
    horizon = now - WINDOW
    result = s.execute(
        sa.delete(LoginThrottle).where(
            LoginThrottle.window_start < horizon,
            sa.or_(LoginThrottle.locked_until.is_(None), LoginThrottle.locked_until < horizon),
        )
    )
    return int(getattr(result, "rowcount", 0) or 0)
