"""The fetch endpoints' parameters, from the REST query or from a typed gRPC request.

Datacooee's document spells parameters two ways (``inputs_ids`` and ``input_ids``,
``timeperiod-start`` and ``timeperiod_start``) and quotes its example values
(``asset_id="67"``). Hyphenated names cannot be proto fields and quoted numbers would fail
the gateway's typed conversion, so over REST the server reads the query from the path the
client sent (``x-envoy-original-path``) and the typed fields serve gRPC callers; both end in
the same `Fetch` or `Stats`, checked by the same rules (docs/datacooee.md, "Parameters").
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl

from google.protobuf import duration_pb2, timestamp_pb2
from thingwire.inputs.v1 import input_data_pb2

from server.errors import InvalidArgument
from server.storage.input_data import AGGREGATES, Window
from server.storage.telemetry import epoch_us, parse_timestamp

__all__ = [
    "DEFAULT_LIMIT",
    "MAX_INPUTS",
    "MAX_LIMIT",
    "MAX_POINTS",
    "Fetch",
    "Stats",
    "asset_id_of",
    "check_points",
    "fetch_of_query",
    "fetch_of_request",
    "query_of_path",
    "stats_of_query",
    "stats_of_request",
]

DEFAULT_LIMIT = 1000
MAX_LIMIT = 10_000
MAX_INPUTS = 100
#: Values one answer may carry: inputs times limit. The default limit fits MAX_INPUTS inputs.
MAX_POINTS = 100_000
MAX_LOOKBACK = timedelta(days=36_525)
MAX_QUERY_FIELDS = 200
MAX_ID_LENGTH = 64

#: Every spelling the document uses, lower-cased and with "-" read as "_", to one name.
_ALIASES = {"inputs_ids": "input_ids"}
_LOOKBACK = re.compile(r"(\d{1,7})\s*[_ ]?\s*(hour|day|week)s?", re.IGNORECASE)
_UNITS = {"hour": timedelta(hours=1), "day": timedelta(days=1), "week": timedelta(weeks=1)}
_DATE_ONLY = re.compile(r"\d{4}-\d{2}-\d{2}")
# "…T14:24:38+02:00" sent unencoded: the query decoding made the "+" a space.
_SPACED_OFFSET = re.compile(r"(.*\d) (\d{2}(?::?\d{2})?)")
_TRUE = frozenset({"true", "1"})
_FALSE = frozenset({"false", "0"})

Order = input_data_pb2.InputDataOrder
Aggregation = input_data_pb2.Aggregation
_AGGREGATION_NAMES = {
    Aggregation.AGGREGATION_MIN: "min",
    Aggregation.AGGREGATION_MAX: "max",
    Aggregation.AGGREGATION_AVG: "avg",
}


@dataclass(frozen=True)
class Fetch:
    """What a values endpoint reads."""

    input_ids: tuple[str, ...]
    window: Window
    limit: int = DEFAULT_LIMIT
    include_location: bool = False
    include_x_axis_value: bool = False
    include_metadata: bool = False
    by_value: bool = False
    descending: bool = False


@dataclass(frozen=True)
class Stats:
    """What a statistics endpoint computes; ``limit`` None means over every value."""

    input_ids: tuple[str, ...]
    window: Window
    aggregates: tuple[str, ...] = AGGREGATES
    limit: int | None = None


# --- the REST query -------------------------------------------------------------------------


def _unquoted(value: str) -> str:
    """The value without surrounding whitespace and one pair of surrounding quotes."""
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        value = value[1:-1].strip()
    return value


def query_of_path(path: str) -> dict[str, str]:
    """The parameters of a REST path, by canonical name (lower case, "_" for "-", one name
    for both spellings of the inputs), values unquoted; empty values count as absent.

    `input_ids` may repeat (the lists are joined); any other parameter given twice with
    different values is INVALID_ARGUMENT, as is a query of more than MAX_QUERY_FIELDS.
    """
    _, _, query = path.partition("?")
    try:
        pairs = parse_qsl(query, keep_blank_values=True, max_num_fields=MAX_QUERY_FIELDS)
    except ValueError:
        raise InvalidArgument(f"too many query parameters (at most {MAX_QUERY_FIELDS})") from None
    params: dict[str, str] = {}
    for raw_name, raw_value in pairs:
        name = raw_name.strip().lower().replace("-", "_")
        name = _ALIASES.get(name, name)
        value = _unquoted(raw_value)
        if not value:
            continue
        if name not in params:
            params[name] = value
        elif name == "input_ids":
            params[name] = f"{params[name]},{value}"
        elif params[name] != value:
            raise InvalidArgument(f"{raw_name} is given more than once with different values")
    return params


def _ids(text: str | None) -> tuple[str, ...]:
    if not text:
        return ()
    return tuple(dict.fromkeys(_unquoted(part) for part in text.split(",") if _unquoted(part)))


def _time(params: Mapping[str, str], name: str) -> int | None:
    """A query time as epoch microseconds: "YYYY-MM-DD hh:mm:ss" (UTC), any ISO-8601 time
    (offsets honoured, none means UTC), or a date alone (its midnight, UTC)."""
    text = params.get(name)
    if text is None:
        return None
    if _DATE_ONLY.fullmatch(text):
        text += "T00:00:00"
    ts = parse_timestamp(text)
    if ts is None and (spaced := _SPACED_OFFSET.fullmatch(text)):
        ts = parse_timestamp(f"{spaced[1]}+{spaced[2]}")
    if ts is None:
        raise InvalidArgument(
            f'{name} must be a UTC time such as "2020-11-02 14:24:38", got {text!r}'
        )
    return ts


def _lookback(params: Mapping[str, str]) -> timedelta | None:
    text = params.get("timeperiod_last")
    if text is None:
        return None
    match = _LOOKBACK.fullmatch(text)
    if match is None or int(match[1]) == 0:
        raise InvalidArgument(
            f'timeperiod_last must be a count of hours, days or weeks such as "5_days", '
            f"got {text!r}"
        )
    return _checked_lookback(int(match[1]) * _UNITS[match[2].lower()])


def _checked_lookback(period: timedelta) -> timedelta:
    if period <= timedelta(0):
        raise InvalidArgument("timeperiod_last (lookback) must be positive")
    if period > MAX_LOOKBACK:
        raise InvalidArgument("timeperiod_last (lookback) must be at most 100 years")
    return period


def _flag(params: Mapping[str, str], name: str) -> bool:
    text = params.get(name)
    if text is None:
        return False
    if text.lower() in _TRUE:
        return True
    if text.lower() in _FALSE:
        return False
    raise InvalidArgument(f"{name} must be true or false, got {text!r}")


def _positive(text: str, name: str, maximum: int) -> int:
    if not text.isascii() or not text.isdigit() or not 1 <= int(text) <= maximum:
        raise InvalidArgument(f"{name} must be an integer from 1 to {maximum}, got {text!r}")
    return int(text)


def _by_value(params: Mapping[str, str]) -> bool:
    text = params.get("order_by", "timestamp").lower()
    if text in ("timestamp", "date"):
        return False
    if text == "value":
        return True
    raise InvalidArgument(f'order_by must be "timestamp", "date" or "value", got {text!r}')


def _descending(params: Mapping[str, str]) -> bool:
    text = params.get("sort_by", "asc").lower()
    if text not in ("asc", "desc"):
        raise InvalidArgument(f'sort_by must be "asc" or "desc", got {text!r}')
    return text == "desc"


def _aggregates(params: Mapping[str, str]) -> tuple[str, ...]:
    names = [name.lower() for name in _ids(params.get("aggregation_func"))]
    unknown = [name for name in names if name not in AGGREGATES]
    if unknown:
        raise InvalidArgument(
            f"aggregation_func must be a comma list of min, max, avg; unknown: {', '.join(unknown)}"
        )
    return tuple(name for name in AGGREGATES if name in names) or AGGREGATES


def _rest_window(params: Mapping[str, str], latest: bool, now: datetime) -> Window:
    return _window(
        _time(params, "timeperiod_start"),
        _time(params, "timeperiod_finish"),
        _lookback(params),
        latest,
        now,
    )


def fetch_of_query(
    params: Mapping[str, str], *, latest: bool, now: datetime, required_ids: bool = True
) -> Fetch:
    """A values endpoint's request from its REST query."""
    limit = params.get("limit")
    return _checked_fetch(
        Fetch(
            input_ids=_ids(params.get("input_ids")),
            window=_rest_window(params, latest, now),
            limit=DEFAULT_LIMIT if limit is None else _positive(limit, "limit", MAX_LIMIT),
            include_location=_flag(params, "is_add_lat_long"),
            include_x_axis_value=_flag(params, "is_add_x_axis_data"),
            include_metadata=_flag(params, "is_add_metadata"),
            by_value=_by_value(params),
            descending=_descending(params),
        ),
        required_ids,
    )


def stats_of_query(
    params: Mapping[str, str], *, latest: bool, now: datetime, required_ids: bool = True
) -> Stats:
    """A statistics endpoint's request from its REST query."""
    limit = params.get("limit")
    return _checked_stats(
        Stats(
            input_ids=_ids(params.get("input_ids")),
            window=_rest_window(params, latest, now),
            aggregates=_aggregates(params),
            limit=None if limit is None else _positive(limit, "limit", MAX_LIMIT),
        ),
        required_ids,
    )


def asset_id_of(params: Mapping[str, str]) -> int:
    """The REST `asset_id`: required, a positive integer."""
    text = params.get("asset_id")
    if text is None:
        raise InvalidArgument("asset_id is required")
    return _positive(text, "asset_id", 2**63 - 1)


# --- typed gRPC requests --------------------------------------------------------------------


#: Timestamp's valid range (years 1 to 9999), in seconds since the epoch.
_MIN_SECONDS = -62_135_596_800
_MAX_SECONDS = 253_402_300_799


def _micros(stamp: timestamp_pb2.Timestamp, name: str) -> int:
    if not _MIN_SECONDS <= stamp.seconds <= _MAX_SECONDS or not 0 <= stamp.nanos < 10**9:
        raise InvalidArgument(f"{name} is out of range")
    return stamp.seconds * 1_000_000 + stamp.nanos // 1000


def _grpc_lookback(request: Any) -> timedelta | None:
    if not request.HasField("lookback"):
        return None
    duration: duration_pb2.Duration = request.lookback
    if abs(duration.seconds) > MAX_LOOKBACK.total_seconds():
        raise InvalidArgument("timeperiod_last (lookback) must be at most 100 years")
    return _checked_lookback(
        timedelta(seconds=duration.seconds, microseconds=duration.nanos // 1000)
    )


def _grpc_window(request: Any, latest: bool, now: datetime) -> Window:
    fields = request.DESCRIPTOR.fields_by_name
    bounds = [
        _micros(getattr(request, name), name) if name in fields and request.HasField(name) else None
        for name in ("start_time", "end_time")
    ]
    return _window(bounds[0], bounds[1], _grpc_lookback(request), latest, now)


def _grpc_limit(value: int, default: int | None) -> int | None:
    if value == 0:
        return default
    if not 1 <= value <= MAX_LIMIT:
        raise InvalidArgument(f"limit_per_input must be from 1 to {MAX_LIMIT} (0: the default)")
    return value


def fetch_of_request(
    request: Any, *, latest: bool, now: datetime, required_ids: bool = True
) -> Fetch:
    """A values endpoint's request from its typed gRPC message."""
    limit = _grpc_limit(request.limit_per_input, DEFAULT_LIMIT)
    assert limit is not None
    return _checked_fetch(
        Fetch(
            input_ids=tuple(dict.fromkeys(i for i in request.input_ids if i)),
            window=_grpc_window(request, latest, now),
            limit=limit,
            include_location=request.include_location,
            include_x_axis_value=request.include_x_axis_value,
            include_metadata=request.include_metadata,
            by_value=request.order == Order.INPUT_DATA_ORDER_VALUE,
            descending=request.descending,
        ),
        required_ids,
    )


def stats_of_request(
    request: Any, *, latest: bool, now: datetime, required_ids: bool = True
) -> Stats:
    """A statistics endpoint's request from its typed gRPC message."""
    unknown = [a for a in request.aggregations if a not in _AGGREGATION_NAMES]
    if unknown:
        raise InvalidArgument("aggregations must be AGGREGATION_MIN, _MAX or _AVG")
    names = {_AGGREGATION_NAMES[a] for a in request.aggregations}
    return _checked_stats(
        Stats(
            input_ids=tuple(dict.fromkeys(i for i in request.input_ids if i)),
            window=_grpc_window(request, latest, now),
            aggregates=tuple(name for name in AGGREGATES if name in names) or AGGREGATES,
            limit=_grpc_limit(request.limit_per_input, None),
        ),
        required_ids,
    )


# --- rules shared by both faces -------------------------------------------------------------


def _window(
    start: int | None, end: int | None, lookback: timedelta | None, latest: bool, now: datetime
) -> Window:
    """The time window: start/finish, or since now minus the lookback (required on the
    `latest` endpoints); not both."""
    if lookback is not None:
        if start is not None or end is not None:
            raise InvalidArgument(
                "give either timeperiod_last or timeperiod_start/timeperiod_finish, not both"
            )
        return Window(start=epoch_us(now - lookback))
    if latest:
        raise InvalidArgument(
            'timeperiod_last is required here (lookback over gRPC), such as "5_days"'
        )
    if start is not None and end is not None and start > end:
        raise InvalidArgument("timeperiod_start must not be after timeperiod_finish")
    return Window(start, end)


def _checked_ids(input_ids: Sequence[str], required: bool) -> None:
    if required and not input_ids:
        raise InvalidArgument("input_ids is required: a comma list of input ids")
    if len(input_ids) > MAX_INPUTS:
        raise InvalidArgument(f"at most {MAX_INPUTS} inputs per request")
    if any(len(i) > MAX_ID_LENGTH for i in input_ids):
        raise InvalidArgument(f"input ids are at most {MAX_ID_LENGTH} characters")


def _checked_fetch(fetch: Fetch, required_ids: bool) -> Fetch:
    _checked_ids(fetch.input_ids, required_ids)
    return fetch


def _checked_stats(stats: Stats, required_ids: bool) -> Stats:
    _checked_ids(stats.input_ids, required_ids)
    return stats


def check_points(inputs: int, limit: int) -> None:
    """Refuse an answer of more than MAX_POINTS values (inputs times limit)."""
    if inputs * limit > MAX_POINTS:
        raise InvalidArgument(
            f"this would answer up to {inputs * limit} values (at most {MAX_POINTS}): "
            "ask for fewer inputs or a lower limit"
        )
