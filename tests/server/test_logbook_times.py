"""The logbook's ISO form of stored times: the seed's shape, six digits, any year."""

from __future__ import annotations

import pytest

from server.storage.telemetry import format_timestamp, parse_timestamp


@pytest.mark.parametrize(
    "text",
    [
        "2020-07-09T10:11:53.811839Z",
        "2020-07-09T10:03:37.566000Z",
        "1970-01-01T00:00:00.000000Z",
        "1969-12-31T23:59:59.999999Z",
        "0001-01-01T00:00:00.000001Z",
        "0999-06-30T12:00:00.500000Z",
        "9999-12-31T23:59:59.999999Z",
    ],
)
def test_round_trip(text: str) -> None:
    ts = parse_timestamp(text)
    assert ts is not None
    assert format_timestamp(ts) == text
