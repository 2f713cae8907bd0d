"""The logbook read's parameters: every accepted form, and a 400 naming each bad one."""

from __future__ import annotations

from typing import Any

import pytest

from server.errors import InvalidArgument
from server.storage.logbook import FieldType
from server.storage.series import Aggregation
from server.telemetry.logbook_query import (
    DEFAULT_SIZE,
    parse_aggregation,
    parse_interval,
    parse_query,
    parse_time,
)

T0 = 1_577_836_800_000_000  # 2020-01-01T00:00:00Z
HOUR = 3_600_000_000


def query(**overrides: str) -> Any:
    params = {
        "device_id": "car",
        "field": "obd.bat.voltage",
        "field_type": "float",
        "from_utc": "2020-01-01T00:00:00Z",
        "to_utc": "2020-01-01T01:00:00Z",
        "aggregation": "",
        "interval": "",
        "size": "",
        **overrides,
    }
    return parse_query(**params)


@pytest.mark.parametrize(
    "text",
    [
        "2020-01-01T00:00:00Z",
        "2020-01-01T00:00:00.000Z",
        "2020-01-01t00:00:00z",
        "2020-01-01T02:00:00+02:00",
        "2020-01-01T02:00:00+0200",
        "2020-01-01T02:00:00 02:00",  # a "+" decoded as a space
        "2019-12-31T19:00:00-05:00",
        "2020-01-01 00:00:00",
        "2020-01-01T00:00:00",
        "2020-01-01",
    ],
)
def test_times(text: str) -> None:
    assert parse_time("from_utc", text) == T0


def test_fractions_are_cut_to_microseconds() -> None:
    assert parse_time("t", "2020-01-01T00:00:00.1234567Z") == T0 + 123_456


@pytest.mark.parametrize("text", ["", "now", "2020-13-01T00:00:00Z", "1577836800", "x" * 100])
def test_bad_times_name_the_parameter(text: str) -> None:
    with pytest.raises(InvalidArgument, match="to_utc"):
        parse_time("to_utc", text)


@pytest.mark.parametrize(
    ("text", "us"),
    [
        ("500ms", 500_000),
        ("30s", 30_000_000),
        ("10m", 600_000_000),
        ("1h", HOUR),
        ("1d", 24 * HOUR),
        ("2w", 14 * 24 * HOUR),
    ],
)
def test_intervals(text: str, us: int) -> None:
    assert parse_interval(text) == us


@pytest.mark.parametrize("text", ["", "0s", "10", "m", "1.5h", "-1m", "10M", "1y", "1H", "1 h"])
def test_bad_intervals(text: str) -> None:
    with pytest.raises(InvalidArgument, match="interval"):
        parse_interval(text)


@pytest.mark.parametrize(
    ("text", "function"),
    [
        ("avg", Aggregation.AVG),
        ("AVG", Aggregation.AVG),
        ("Average", Aggregation.AVG),
        ("min", Aggregation.MIN),
        ("MAX", Aggregation.MAX),
        ("Sum", Aggregation.SUM),
        ("COUNT", Aggregation.COUNT),
        ("none", None),
        ("NONE", None),
        ("", None),
    ],
)
def test_aggregations(text: str, function: Aggregation | None) -> None:
    assert parse_aggregation(text) == function


def test_defaults() -> None:
    q = query(field_type="")
    assert (q.field_type, q.aggregation, q.window, q.size) == (
        FieldType.FLOAT,
        None,
        None,
        DEFAULT_SIZE,
    )
    assert (q.start_us, q.end_us) == (T0, T0 + HOUR)


def test_an_aggregation_without_interval_is_one_bucket() -> None:
    q = query(aggregation="sum")
    assert q.window is not None
    assert (q.window.width_us, q.window.bucket_count) == (HOUR, 1)


def test_an_interval_wider_than_the_range_is_the_range() -> None:
    q = query(aggregation="avg", interval="999999999999w")
    assert q.window is not None
    assert q.window.width_us == HOUR


def test_the_bucket_limit() -> None:
    assert query(aggregation="avg", interval="36ms").window.bucket_count == 100_000
    with pytest.raises(InvalidArgument, match="100000 are allowed"):
        query(aggregation="avg", interval="35ms")


@pytest.mark.parametrize(
    ("overrides", "word"),
    [
        ({"device_id": ""}, "device_id"),
        ({"field": ""}, "field"),
        ({"field": "voltage"}, "field"),
        ({"field_type": "int"}, "field_type"),
        ({"aggregation": "median"}, "aggregation"),
        ({"aggregation": "avg", "field_type": "geo_point"}, "numeric"),
        ({"aggregation": "count", "field_type": "string"}, "numeric"),
        ({"to_utc": "2020-01-01T00:00:00Z"}, "later"),
        ({"size": "0"}, "size"),
        ({"size": "100001"}, "size"),
        ({"size": "1e3"}, "size"),
        ({"interval": "soon"}, "interval"),  # checked even without an aggregation
    ],
)
def test_bad_parameters(overrides: dict[str, str], word: str) -> None:
    with pytest.raises(InvalidArgument, match=word):
        query(**overrides)
