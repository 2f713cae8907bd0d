"""The query parameters of a logbook read, checked and turned into numbers once.

Every parameter arrives as text (the REST query string); each bad one is an
``InvalidArgument`` whose message names the parameter and what it accepts, so that a
client sees a 400 it can act on (docs/telemetry-reads.md, "Parameters").
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from server.errors import InvalidArgument
from server.storage.logbook import FieldType, field_splits
from server.storage.series import MAX_BUCKETS, Aggregation, Window
from server.storage.telemetry import iso_to_epoch_us

__all__ = [
    "DEFAULT_SIZE",
    "MAX_SIZE",
    "LogbookQuery",
    "parse_aggregation",
    "parse_interval",
    "parse_query",
    "parse_time",
]

#: Items a read returns when ``size`` is not given, and the most it may ask for.
DEFAULT_SIZE = 10_000
MAX_SIZE = MAX_BUCKETS

_UNITS_US = {
    "ms": 1_000,
    "s": 1_000_000,
    "m": 60_000_000,
    "h": 3_600_000_000,
    "d": 86_400_000_000,
    "w": 604_800_000_000,
}
_INTERVAL_RE = re.compile(r"([0-9]{1,12})(ms|s|m|h|d|w)")
_AGGREGATIONS = {
    "avg": Aggregation.AVG,
    "average": Aggregation.AVG,
    "mean": Aggregation.AVG,
    "min": Aggregation.MIN,
    "max": Aggregation.MAX,
    "sum": Aggregation.SUM,
    "count": Aggregation.COUNT,
}
#: A query string's "+02:00" arrives as " 02:00" when a client form-encodes it and a proxy
#: decodes "+" as a space: the offset is read back.
_SPACED_OFFSET = re.compile(
    r"^(.*[Tt ][0-9]{2}:[0-9]{2}(?::[0-9]{2}(?:[.,][0-9]+)?)?) ([0-9]{2}(?::?[0-9]{2})?)$"
)


@dataclass(frozen=True)
class LogbookQuery:
    """One checked read: what to read, over which range, raw or bucketed, how many items."""

    device: str
    field: str
    splits: list[tuple[str, str]]
    field_type: FieldType
    start_us: int
    end_us: int
    #: None: a raw read.
    aggregation: Aggregation | None
    #: The bucket width of an aggregated read (the whole range when no interval is given).
    window: Window | None
    size: int


def parse_time(name: str, text: str) -> int:
    """An ISO-8601 date and time (any offset, ``Z``, any fraction) as epoch µs.

    A time without an offset is UTC; a date alone is its midnight UTC. Fractions finer
    than a microsecond are cut.
    """
    if not text:
        raise InvalidArgument(f"{name} is required: an ISO-8601 time such as 2020-01-01T00:00:00Z")
    value = _SPACED_OFFSET.sub(r"\1+\2", text.strip())
    ts = iso_to_epoch_us(value) if len(value) <= 64 else None
    if ts is None:
        raise InvalidArgument(
            f"{name}={text[:64]!r} is not an ISO-8601 time such as 2020-01-01T00:00:00.000Z"
        )
    return ts


def parse_interval(text: str) -> int:
    """An interval such as ``30s``, ``10m``, ``1h``, ``1d`` (also ``ms`` and ``w``) in µs."""
    match = _INTERVAL_RE.fullmatch(text.strip())
    if match is None or int(match.group(1)) == 0:
        raise InvalidArgument(
            f"interval={text[:32]!r} is not an interval: a whole number above 0 and a unit, "
            "ms, s, m, h, d or w (30s, 10m, 1h, 1d)"
        )
    return int(match.group(1)) * _UNITS_US[match.group(2)]


def parse_aggregation(text: str) -> Aggregation | None:
    """The aggregation named in any case; None for ``none`` or an empty value (raw read)."""
    name = text.strip().lower()
    if name in ("", "none"):
        return None
    try:
        return _AGGREGATIONS[name]
    except KeyError:
        raise InvalidArgument(
            f"aggregation={text[:32]!r} is not one of avg (average), min, max, sum, count, none"
        ) from None


def _size(text: str) -> int:
    if not text:
        return DEFAULT_SIZE
    if not re.fullmatch(r"[0-9]{1,9}", text.strip()) or not 1 <= int(text) <= MAX_SIZE:
        raise InvalidArgument(f"size={text[:32]!r} must be a whole number from 1 to {MAX_SIZE}")
    return int(text)


def parse_query(
    *,
    device_id: str,
    field: str,
    field_type: str,
    from_utc: str,
    to_utc: str,
    aggregation: str,
    interval: str,
    size: str,
) -> LogbookQuery:
    """Check every parameter of a read; InvalidArgument names the first one that is bad."""
    if not device_id:
        raise InvalidArgument("device_id is required: the device's unit id or device id")
    if not field:
        raise InvalidArgument("field is required, such as obd.bat.voltage")
    splits = field_splits(field)
    if splits is None:
        raise InvalidArgument(
            f"field={field[:64]!r} must be a record type and a key joined by a dot, such as "
            "obd.bat.voltage (printable, without double quotes)"
        )
    try:
        kind = FieldType(field_type.strip().lower() or "float")
    except ValueError:
        raise InvalidArgument(
            f"field_type={field_type[:32]!r} is not one of float, long, string, geo_point"
        ) from None
    start = parse_time("from_utc", from_utc)
    end = parse_time("to_utc", to_utc)
    if end <= start:
        raise InvalidArgument("to_utc must be later than from_utc")
    function = parse_aggregation(aggregation)
    width = parse_interval(interval) if interval else None
    window = None
    if function is not None:
        if not kind.numeric:
            raise InvalidArgument(
                f"aggregation {function.value} needs a numeric field_type (float or long), "
                f"not {kind.value}"
            )
        # A bucket wider than the range is the range: the width stays an int64 that SQL
        # divides by (a 999999999999w interval is beyond 64 bits).
        window = Window(start, end, min(width or end - start, end - start))
        if window.bucket_count > MAX_BUCKETS:
            raise InvalidArgument(
                f"interval={interval!r} cuts the range into {window.bucket_count} buckets; "
                f"at most {MAX_BUCKETS} are allowed: use a longer interval or a shorter range"
            )
    return LogbookQuery(
        device=device_id,
        field=field,
        splits=splits,
        field_type=kind,
        start_us=start,
        end_us=end,
        aggregation=function,
        window=window,
        size=_size(size),
    )
