"""The Datacooee upload document: values, numbers, coordinates and times."""

from __future__ import annotations

import random
from datetime import datetime, timedelta

import orjson
import pytest

from server.datacooee.upload import number_of, point_of_body
from server.storage.telemetry import format_timestamp


@pytest.mark.parametrize(
    ("text", "number"),
    [
        ("12.5", 12.5),
        (" -3 ", -3.0),
        ("1e-3", 0.001),
        (".5", 0.5),
        ("7.", 7.0),
        ("nan", None),
        ("inf", None),
        ("1_000", None),
        ("0x10", None),
        ("1e400", None),
        ("1e301", None),
        ("off", None),
        ("", None),
    ],
)
def test_the_numeric_reading_of_a_value(text: str, number: float | None) -> None:
    assert number_of(text) == number


def test_times_are_written_with_six_fraction_digits() -> None:
    epoch = datetime(1970, 1, 1)
    samples = [0, -1, 1_602_597_759_489_000, -62_135_596_800_000_000, 253_402_300_799_999_999]
    samples += [
        random.randint(-62_135_596_800_000_000, 253_402_300_799_999_999) for _ in range(2000)
    ]
    for ts in samples:
        expected = (epoch + timedelta(microseconds=ts)).isoformat(timespec="microseconds") + "Z"
        assert format_timestamp(ts) == expected


@pytest.mark.parametrize(
    ("stamp", "written"),
    [
        ("9999-12-31T23:59:59.5-23:59", "10000-01-01T23:58:59.500000Z"),
        ("0001-01-01T00:00:00+23:59", "0000-12-31T00:01:00.000000Z"),
    ],
)
def test_times_an_offset_takes_past_year_9999_or_before_year_1_are_written(
    stamp: str, written: str
) -> None:
    body = {"data": {"type": "SensorData", "attributes": {"value": "1", "timestamp": stamp}}}
    point = point_of_body(orjson.dumps(body), "senx")
    assert format_timestamp(point.ts) == written


def test_numbers_are_kept_as_their_json_text() -> None:
    body = {
        "data": {
            "type": "SensorData",
            "attributes": {
                "value": 12,
                "timestamp": "2020-10-13T16:02:39.4891234+02:00",
                "latitude": "40.730610",
                "longitude": "",
            },
        }
    }
    point = point_of_body(orjson.dumps(body), "senx")
    assert (point.value, point.number) == ("12", 12.0)
    assert point.ts == 1_602_597_759_489_123
    assert (point.latitude, point.longitude) == (40.73061, None)
