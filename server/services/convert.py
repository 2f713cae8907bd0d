"""Conversions between storage rows and protobuf messages shared by several servicers."""

from __future__ import annotations

from datetime import UTC, datetime

from google.protobuf import timestamp_pb2

from server.errors import InvalidArgument


def timestamp(value: datetime | None) -> timestamp_pb2.Timestamp | None:
    """A Timestamp for a datetime (None stays None, so the field stays unset)."""
    if value is None:
        return None
    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(value.astimezone(UTC))
    return ts


def datetime_or_none(ts: timestamp_pb2.Timestamp, present: bool, field: str) -> datetime | None:
    """The datetime of a Timestamp field, or None when the field was not set."""
    if not present:
        return None
    try:
        return ts.ToDatetime(tzinfo=UTC)
    except (ValueError, OverflowError, OSError):
        raise InvalidArgument(f"{field} is out of range") from None


def epoch_ms_or_none(value: int, field: str) -> datetime | None:
    """Thinger's epoch-millisecond expiries; only 0 means none; beyond year 9999 is invalid.

    A negative value is a time before 1970, which storage refuses as lying in the past: it
    never means "no expiry".
    """
    if value == 0:
        return None
    try:
        return datetime.fromtimestamp(value / 1000, tz=UTC)
    except (ValueError, OverflowError, OSError):
        raise InvalidArgument(f"{field} is out of range") from None
