"""Conversions between storage rows and protobuf messages shared by several servicers."""

from __future__ import annotations

from datetime import UTC, datetime

from google.protobuf import json_format, timestamp_pb2
from google.protobuf.message import Message

from server.auth.permissions import NULL
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


def epoch_ms(moment: datetime | None) -> int:
    """A time as Thinger's epoch milliseconds; 0 for none (never connected, say)."""
    return int(moment.timestamp() * 1000) if moment is not None else 0


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


def json_sent(request: Message, field: str, absent: object) -> object:
    """A google.protobuf.Value field as the client sent it, as JSON; `absent` only if it
    was left out.

    Such fields are Values so that the gateway hands over the JSON as sent (nulls, unknown
    keys and bare strings included) and one parser judges its shape. A JSON null (or a
    Value of no kind, as bytes of another type would decode) is `NULL`, which the parsers
    refuse: never the wide default that leaving the field out means.
    """
    if not request.HasField(field):
        return absent
    value = getattr(request, field)
    if value.WhichOneof("kind") in (None, "null_value"):
        return NULL
    return json_format.MessageToDict(value)
