"""Hashing of passwords, device credentials and random secrets.

Two kinds of secret, two kinds of hash:

* Low-entropy, human-chosen secrets (passwords, device credentials) use argon2id, which is
  slow on purpose. These calls block for tens of milliseconds: call them from a worker thread
  (``Database.run``), never on the event loop.
* High-entropy random secrets we generate ourselves (API tokens, push tokens, org API keys)
  cannot be brute-forced, so a plain SHA-256 is enough, and being deterministic it can be
  stored in an indexed column and looked up directly.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import secrets
import threading

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

__all__ = [
    "configure_argon2",
    "hash_password",
    "hash_secret",
    "needs_rehash",
    "new_secret",
    "secrets_equal",
    "verify_password",
]

# argon2-cffi's defaults (RFC 9106 low-memory profile). Tests lower them via configure_argon2.
DEFAULT_TIME_COST = 3
DEFAULT_MEMORY_COST = 65536  # KiB
DEFAULT_PARALLELISM = 4

_lock = threading.Lock()
_hasher = PasswordHasher(
    time_cost=DEFAULT_TIME_COST, memory_cost=DEFAULT_MEMORY_COST, parallelism=DEFAULT_PARALLELISM
)
_dummy_hash: str | None = None


def configure_argon2(
    time_cost: int = DEFAULT_TIME_COST,
    memory_cost: int = DEFAULT_MEMORY_COST,
    parallelism: int = DEFAULT_PARALLELISM,
) -> None:
    """Replace the argon2 parameters (tests lower them so the suite stays fast).

    Hashes made with other parameters still verify; ``needs_rehash`` reports them.
    """
    global _hasher, _dummy_hash
    with _lock:
        _hasher = PasswordHasher(
            time_cost=time_cost, memory_cost=memory_cost, parallelism=parallelism
        )
        _dummy_hash = None


def _dummy() -> str:
    """A hash of a random password, verified against when there is no account.

    It uses the current parameters so a failed lookup costs as much as a real verification.
    """
    global _dummy_hash
    with _lock:
        if _dummy_hash is None:
            _dummy_hash = _hasher.hash(secrets.token_urlsafe(16))
        return _dummy_hash


def hash_password(password: str) -> str:
    """Hash a password or device credential with argon2id (salted, PHC string)."""
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    """True when ``password`` matches; never raises on a mismatch or a malformed hash.

    With ``password_hash=None`` (no such user) a dummy hash is verified anyway, so the
    response time does not reveal whether the account exists.
    """
    if password_hash is None:
        with contextlib.suppress(VerificationError):
            _hasher.verify(_dummy(), password)
        return False
    try:
        return _hasher.verify(password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    """True when the hash was made with parameters other than the current ones."""
    try:
        return _hasher.check_needs_rehash(password_hash)
    except (InvalidHashError, ValueError):
        return True


def new_secret(nbytes: int = 32) -> str:
    """A fresh random secret, URL-safe base64 (shown once to its owner, then only hashed)."""
    return secrets.token_urlsafe(nbytes)


def hash_secret(secret: str) -> str:
    """SHA-256 hex of a high-entropy secret; deterministic so it can be an indexed lookup key."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def secrets_equal(a: str | bytes, b: str | bytes) -> bool:
    """Constant-time comparison, so timing does not leak how much of a secret matched."""
    if isinstance(a, str):
        a = a.encode("utf-8")
    if isinstance(b, str):
        b = b.encode("utf-8")
    return hmac.compare_digest(a, b)
