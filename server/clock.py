"""The one UTC clock: every time thingwire reads or stores is timezone-aware UTC."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

#: What servicers and the authenticator are given, so that tests can pass a manual clock.
Clock = Callable[[], datetime]


def utc_now(value: datetime | None = None) -> datetime:
    """``value`` as aware UTC (a naive value is taken to be UTC); the current time when None.

    Called with no argument it is the server's clock; storage calls it on every time it is
    handed, so a naive or non-UTC value never reaches a comparison or a column.
    """
    if value is None:
        return datetime.now(UTC)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
