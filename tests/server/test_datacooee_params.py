"""Reading the Datacooee fetch parameters from a REST path: every documented spelling."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from server.datacooee import params
from server.errors import InvalidArgument
from server.storage.input_data import Window

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
SECOND = 1_000_000


def fetch(query: str, latest: bool = False) -> params.Fetch:
    return params.fetch_of_query(params.query_of_path(f"/x?{query}"), latest=latest, now=NOW)


def test_names_spellings_and_quotes() -> None:
    assert params.query_of_path(
        '/x/?inputs_ids=%22a,b%22&Timeperiod-Start="2020-11-02 14:24:38"&limit=%20%27100%27%20'
        "&empty=&input_ids=c"
    ) == {"input_ids": "a,b,c", "timeperiod_start": "2020-11-02 14:24:38", "limit": "100"}


def test_a_parameter_twice_must_agree() -> None:
    assert params.query_of_path("/x?limit=1&limit=%221%22") == {"limit": "1"}
    with pytest.raises(InvalidArgument, match="more than once"):
        params.query_of_path("/x?timeperiod_start=2020-01-01&timeperiod-start=2020-01-02")


def test_too_many_parameters() -> None:
    with pytest.raises(InvalidArgument, match="too many"):
        params.query_of_path("/x?" + "&".join(f"p{n}=1" for n in range(300)))


@pytest.mark.parametrize(
    "text",
    [
        "2020-11-02 14:24:38",
        "2020-11-02T14:24:38Z",
        "2020-11-02T16:24:38%2B02:00",
        "2020-11-02T16:24:38+02:00",  # "+" unencoded: decoded as a space, read back
        "2020-11-02 16:24:38 0200",
        "2020-11-02T14:24:38.000Z",
    ],
)
def test_time_forms(text: str) -> None:
    expected = int(datetime(2020, 11, 2, 14, 24, 38, tzinfo=UTC).timestamp()) * SECOND
    assert fetch(f"input_ids=a&timeperiod_start={text}").window == Window(expected, None)


def test_a_date_alone_is_its_midnight_and_lookback_counts_from_now() -> None:
    midnight = int(datetime(2020, 11, 2, tzinfo=UTC).timestamp()) * SECOND
    assert fetch("input_ids=a&timeperiod_finish=2020-11-02").window == Window(None, midnight)
    for text, hours in [("1_hour", 1), ("2_hours", 2), ("1_day", 24), ("2%20Weeks", 336)]:
        start = int(NOW.timestamp()) * SECOND - hours * 3600 * SECOND
        assert fetch(f"input_ids=a&timeperiod_last={text}", latest=True).window == Window(start)


def test_defaults() -> None:
    got = fetch("input_ids=a, b ,a")
    assert got == params.Fetch(input_ids=("a", "b"), window=Window(), limit=1000)
    stats = params.stats_of_query({"input_ids": "a"}, latest=False, now=NOW)
    assert (stats.aggregates, stats.limit) == (("min", "max", "avg"), None)


@pytest.mark.parametrize("limit", ["0", "-1", "1.5", "١٢", "10001", "1e3"])
def test_bad_limits(limit: str) -> None:
    with pytest.raises(InvalidArgument, match="limit"):
        fetch(f"input_ids=a&limit={limit}")


def test_answers_are_bounded() -> None:
    params.check_points(100, 1000)
    with pytest.raises(InvalidArgument, match="fewer inputs"):
        params.check_points(11, 10_000)
