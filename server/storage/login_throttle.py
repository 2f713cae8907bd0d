"""Throttle of password logins, kept in the database so that every replica enforces it.

Each attempt counts against two keys:

- the pair (client address, account): ``CLIENT_LIMIT`` failures within ``WINDOW`` lock the
  pair for ``LOCK_BASE``, doubling with each further failure up to ``LOCK_MAX``. A hostile
  client locks out only itself; the owner, elsewhere, still logs in.
- the account alone, across all addresses: a far higher ceiling (``ACCOUNT_LIMIT``) that
  still stops a guesser spread over many addresses.

An account is the user when the login names one (by email or username alike), otherwise the
login text in the form the lookup uses, so unknown accounts are throttled exactly like real
ones and the answers reveal nothing. An attempt is *reserved* — counted under a row lock —
before its password is checked, so parallel attempts cannot check more passwords than the
limit allows. A reservation that reaches a limit locks the key at once (that is what stops
the parallel attempts); when the password proves right, `forgive` undoes exactly what the
reservation did, its lock included, so a correct password never leaves a lock behind.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.orm import Session

from server.clock import utc_now
from server.errors import Throttled
from server.storage._common import insert_ignore
from server.storage.models import LoginThrottle

CLIENT_LIMIT = 5
ACCOUNT_LIMIT = 50
WINDOW = timedelta(minutes=15)
LOCK_BASE = timedelta(seconds=30)
LOCK_MAX = timedelta(minutes=15)
KEY_LENGTH = 254


@dataclass(frozen=True)
class ThrottleKey:
    """One counter an attempt is charged to, and the failures that lock it."""

    key: str
    limit: int


def account_of(user_id: int | None, login: str) -> str:
    """The account an attempt is charged to: the user, or the login text as looked up."""
    if user_id is not None:
        return f"user:{user_id}"
    text = login.strip()
    return f"login:{text.lower() if '@' in text else text}"


def keys_for(account: str, client: str) -> tuple[ThrottleKey, ...]:
    """The per-(client, account) and per-account counters; the client comes first so a
    long login text cannot truncate it away."""
    return (
        ThrottleKey(f"c:{client}|{account}"[:KEY_LENGTH], CLIENT_LIMIT),
        ThrottleKey(f"a:{account}"[:KEY_LENGTH], ACCOUNT_LIMIT),
    )


@dataclass(frozen=True)
class Reservation:
    """One reserved attempt: the keys it was charged to and the locks it changed.

    `locks` maps a key the reservation locked to the lock it had before (None if none).
    """

    keys: tuple[ThrottleKey, ...]
    locks: dict[str, tuple[datetime | None, datetime]]


def _lock_for(failures: int, limit: int) -> timedelta:
    extra = failures - limit
    if extra < 0:
        return timedelta(0)
    # 2**extra grows fast; cap the exponent before it can overflow timedelta.
    return min(LOCK_BASE * 2 ** min(extra, 32), LOCK_MAX)


def _retry_after(locked_until: datetime, now: datetime) -> int:
    return max(1, math.ceil((locked_until - now).total_seconds()))


def _locked_rows(s: Session, keys: Sequence[ThrottleKey], now: datetime) -> list[LoginThrottle]:
    """The rows of `keys`, created if missing and locked for update, in a fixed order."""
    names = sorted({k.key for k in keys})
    for name in names:
        # Insert-or-ignore makes the row exist without a race (on SQLite it also opens the
        # write transaction, serialising what follows); FOR UPDATE does so on PostgreSQL.
        insert_ignore(s, LoginThrottle, {"key": name, "failures": 0, "window_start": now})
    return list(
        s.scalars(
            sa.select(LoginThrottle)
            .where(LoginThrottle.key.in_(names))
            .order_by(LoginThrottle.key)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
    )


def reserve(s: Session, keys: Sequence[ThrottleKey], now: datetime | None = None) -> Reservation:
    """Charge one attempt to every key; raise Throttled, charging nothing, if one is locked."""
    now = utc_now(now)
    rows = {row.key: row for row in _locked_rows(s, keys, now)}
    locked = [r.locked_until for r in rows.values() if r.locked_until and r.locked_until > now]
    if locked:
        retry_after = _retry_after(max(locked), now)
        raise Throttled(f"too many failed logins; retry in {retry_after} s", retry_after)
    changed: dict[str, tuple[datetime | None, datetime]] = {}
    for key in keys:
        row = rows[key.key]
        escalating = row.locked_until is not None and now - row.locked_until < WINDOW
        if now - row.window_start >= WINDOW and not escalating:
            row.failures, row.window_start, row.locked_until = 0, now, None
        row.failures += 1
        if row.failures >= key.limit:
            lock = now + _lock_for(row.failures, key.limit)
            changed[key.key] = (row.locked_until, lock)
            row.locked_until = lock
    s.flush()
    return Reservation(tuple(keys), changed)


def forgive(s: Session, reservation: Reservation) -> None:
    """Undo the reservation of an attempt whose password was right.

    The client's counter is cleared (it proved itself); the account's only loses this one
    attempt, so failures others spread over many addresses keep counting, and gets back the
    lock it had before the reservation (an expired lock still marks failures as escalating).
    A lock someone else set since is left alone.
    """
    client_key, *account_keys = reservation.keys
    s.execute(sa.delete(LoginThrottle).where(LoginThrottle.key == client_key.key))
    _undo(s, reservation, account_keys)


def withdraw(s: Session, reservation: Reservation) -> None:
    """Undo the reservation of an attempt whose password was never answered (cancelled).

    Nothing was learnt, so nothing is charged: every key loses this one attempt and gets
    back the lock it had before; earlier failures, the client's included, stay counted.
    """
    _undo(s, reservation, reservation.keys)


def _undo(s: Session, reservation: Reservation, keys: Sequence[ThrottleKey]) -> None:
    """Take this reservation's attempt off ``keys``, and the locks it set."""
    for key in keys:
        row = s.scalars(
            sa.select(LoginThrottle).where(LoginThrottle.key == key.key).with_for_update()
        ).one_or_none()
        if row is None:
            continue
        row.failures = max(0, row.failures - 1)
        if key.key in reservation.locks:
            before, set_by_us = reservation.locks[key.key]
            if row.locked_until == set_by_us:
                row.locked_until = before
    s.flush()


def prune(s: Session, now: datetime | None = None) -> int:
    """Delete rows that no longer affect anything (run periodically); returns the count.

    Failed logins for made-up accounts create rows too; this keeps the table small.
    """
    now = utc_now(now)
    horizon = now - WINDOW
    result = s.execute(
        sa.delete(LoginThrottle).where(
            LoginThrottle.window_start < horizon,
            sa.or_(LoginThrottle.locked_until.is_(None), LoginThrottle.locked_until < horizon),
        )
    )
    return int(getattr(result, "rowcount", 0) or 0)
