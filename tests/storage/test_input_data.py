"""Datacooee input data storage: stored once per (input, timestamp), read per input with a
limit, summarised in SQL; on SQLite and PostgreSQL."""

from __future__ import annotations

import statistics as py_stats
from dataclasses import dataclass
from typing import Any

import pytest

from server.errors import NotFound
from server.storage import input_data, orgs
from server.storage.db import Database
from server.storage.input_data import NewPoint, Window

SECOND = 1_000_000


@dataclass
class Org:
    id: str
    inputs: list[str]
    asset: int


@pytest.fixture
def acme(database: Database) -> Org:
    with database.session() as s:
        org, _ = orgs.create_org(s, "acme")
        ids = [orgs.create_input(s, org.id, f"input {n}", "C").id for n in range(3)]
        asset = orgs.create_asset(s, org.id, "car", ids[:2])
        return Org(org.id, ids, asset.id)


@pytest.fixture
def other(database: Database) -> Org:
    with database.session() as s:
        org, _ = orgs.create_org(s, "other")
        ids = [orgs.create_input(s, org.id, "theirs").id]
        asset = orgs.create_asset(s, org.id, "truck", ids)
        return Org(org.id, ids, asset.id)


def point(ts: int, value: str, **extra: Any) -> NewPoint:
    number = float(value) if value[0].isdigit() else None
    return NewPoint(ts=ts, value=value, number=number, **extra)


def test_a_value_is_stored_once_and_the_first_wins(database: Database, acme: Org) -> None:
    with database.session() as s:
        first = input_data.store_point(s, acme.id, acme.inputs[0], point(5 * SECOND, "1.5"))
        again = input_data.store_point(s, acme.id, acme.inputs[0], point(5 * SECOND, "9"))
        elsewhere = input_data.store_point(s, acme.id, acme.inputs[1], point(5 * SECOND, "2"))
    assert again == first
    assert (first.value, first.number, first.ts) == ("1.5", 1.5, 5 * SECOND)
    assert elsewhere.id != first.id
    with database.session() as s:
        rows = input_data.read_points(s, [acme.inputs[0]], Window(), limit=10)
    assert [p.value for p in rows[acme.inputs[0]]] == ["1.5"]


def test_another_organisations_input_is_not_found(
    database: Database, acme: Org, other: Org
) -> None:
    with database.session() as s:
        with pytest.raises(NotFound):
            input_data.store_point(s, acme.id, other.inputs[0], point(1, "1"))
        with pytest.raises(NotFound):
            input_data.store_point(s, acme.id, "sennosuchinpu", point(1, "1"))
        with pytest.raises(NotFound, match=other.inputs[0]):
            input_data.inputs_of(s, acme.id, [acme.inputs[0], other.inputs[0]])
        with pytest.raises(NotFound):
            input_data.asset_inputs_of(s, acme.id, other.asset, [])
        with pytest.raises(NotFound, match=acme.inputs[2]):
            input_data.asset_inputs_of(s, acme.id, acme.asset, [acme.inputs[2]])


def test_inputs_keep_the_order_asked(database: Database, acme: Org) -> None:
    with database.session() as s:
        asked = [acme.inputs[2], acme.inputs[0], acme.inputs[2]]
        assert [i.id for i in input_data.inputs_of(s, acme.id, asked)] == asked[:2]
        _, name, members = input_data.asset_inputs_of(s, acme.id, acme.asset, [])
        assert name == "car"
        assert [i.id for i in members] == sorted(acme.inputs[:2])


@pytest.fixture
def loaded(database: Database, acme: Org) -> Org:
    """Input 0: values 0..19 at seconds 0..19; input 1: "x" at 0 and values 10-n at n."""
    with database.session() as s:
        input_data.insert_points(s, acme.inputs[0], [point(n * SECOND, str(n)) for n in range(20)])
        input_data.insert_points(
            s,
            acme.inputs[1],
            [point(0, "x"), *(point(n * SECOND, str(10 - n)) for n in range(1, 10))],
        )
    return acme


def test_the_limit_is_per_input_and_the_order_is_kept(database: Database, loaded: Org) -> None:
    a, b = loaded.inputs[:2]
    with database.session() as s:
        rows = input_data.read_points(s, [a, b], Window(), limit=3, descending=True)
        assert [p.ts // SECOND for p in rows[a]] == [19, 18, 17]
        assert [p.ts // SECOND for p in rows[b]] == [9, 8, 7]
        rows = input_data.read_points(s, [b], Window(), limit=4, by_value=True)
        assert [p.value for p in rows[b]] == ["1", "2", "3", "4"]
        rows = input_data.read_points(s, [b], Window(), limit=20, by_value=True, descending=True)
        # Values that are not numbers come last in both directions.
        assert [p.value for p in rows[b]][:2] == ["9", "8"]
        assert rows[b][-1].value == "x"
        rows = input_data.read_points(s, [a, loaded.inputs[2]], Window(), limit=1000)
        assert len(rows[a]) == 20
        assert rows[loaded.inputs[2]] == []


def test_the_window_includes_both_ends(database: Database, loaded: Org) -> None:
    a = loaded.inputs[0]
    with database.session() as s:
        rows = input_data.read_points(s, [a], Window(5 * SECOND, 8 * SECOND), limit=100)
        assert [p.ts // SECOND for p in rows[a]] == [5, 6, 7, 8]
        rows = input_data.read_points(s, [a], Window(start=18 * SECOND), limit=100)
        assert [p.ts // SECOND for p in rows[a]] == [18, 19]


def test_statistics_match_an_independent_computation(database: Database, loaded: Org) -> None:
    a, b, empty = loaded.inputs
    with database.session() as s:
        figures = input_data.statistics(
            s, [a, b, empty], Window(2 * SECOND, 11 * SECOND), ("min", "max", "avg")
        )
        limited = input_data.statistics(s, [a], Window(), ("avg",), limit=4)
        only_max = input_data.statistics(s, [b], Window(), ("max",))
    in_a = list(range(2, 12))
    in_b = [10 - n for n in range(2, 10)]
    assert figures[a] == {"min": 2.0, "max": 11.0, "avg": pytest.approx(py_stats.fmean(in_a))}
    assert figures[b] == {"min": 1.0, "max": 8.0, "avg": pytest.approx(py_stats.fmean(in_b))}
    assert figures[empty] == {"min": None, "max": None, "avg": None}
    assert limited[a] == {"avg": pytest.approx(py_stats.fmean([16, 17, 18, 19]))}
    # The value "x" is not a number: statistics leave it out.
    assert only_max[b] == {"max": 9.0}


def test_optional_fields_round_trip(database: Database, acme: Org) -> None:
    with database.session() as s:
        stored = input_data.store_point(
            s,
            acme.id,
            acme.inputs[0],
            point(
                7, "3", latitude=40.73061, longitude=-73.935242, meta='{"a":1}', x_axis_value="km 3"
            ),
        )
    assert (stored.latitude, stored.longitude, stored.meta, stored.x_axis_value) == (
        40.73061,
        -73.935242,
        '{"a":1}',
        "km 3",
    )
