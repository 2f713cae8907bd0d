"""What every servicer shares: the database, the token signer, password logins, the clock.

Passed explicitly to servicers (no globals), so tests build one with a fixed clock.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from server.auth.passwords import PasswordLogins
from server.security.jwt_tokens import TokenSigner
from server.storage import tokens
from server.storage.db import Database

JWT_SECRET_NAME = "jwt_hs256"  # noqa: S105 - the name of a stored secret


def utc_now() -> datetime:
    """The current time, timezone-aware."""
    return datetime.now(UTC)


@dataclass(frozen=True)
class AppState:
    """Dependencies of the servicers and the auth interceptor."""

    database: Database
    signer: TokenSigner
    logins: PasswordLogins
    clock: Callable[[], datetime] = field(default=utc_now)

    @classmethod
    async def open(cls, database: Database, clock: Callable[[], datetime] = utc_now) -> AppState:
        """Load (or create, once) the persisted JWT secret shared by every replica."""
        key = await database.run(lambda s: tokens.get_or_create_secret(s, JWT_SECRET_NAME))
        return cls(
            database=database,
            signer=TokenSigner(key),
            logins=PasswordLogins(database),
            clock=clock,
        )
