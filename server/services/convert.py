"""Conversions between storage rows and protobuf messages shared by several servicers."""

from __future__ import annotations

from datetime import UTC, datetime

from google.protobuf import timestamp_pb2


def timestamp(value: datetime | None) -> timestamp_pb2.Timestamp | None:
    """A Timestamp for a datetime (None stays None, so the field stays unset)."""
    if value is None:
        return None
    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(value.astimezone(UTC))
    return ts


def datetime_or_none(ts: timestamp_pb2.Timestamp, present: bool) -> datetime | None:
    """The datetime of a Timestamp field, or None when the field was not set."""
    if not present:
        return None
    return ts.ToDatetime(tzinfo=UTC)


def epoch_ms_or_none(value: int) -> datetime | None:
    """Thinger's epoch-millisecond expiries; 0 means none."""
    if value <= 0:
        return None
    return datetime.fromtimestamp(value / 1000, tz=UTC)
