"""Security primitives: password and secret hashing."""

from server.security.hashing import (
    configure_argon2,
    hash_password,
    hash_secret,
    needs_rehash,
    new_secret,
    secrets_equal,
    verify_password,
)

__all__ = [
    "configure_argon2",
    "hash_password",
    "hash_secret",
    "needs_rehash",
    "new_secret",
    "secrets_equal",
    "verify_password",
]
