"""A device pushes the AutoPi guide's records as its firmware does; its owner reads them back
through the logbook, with the values and buckets the push carried (docs/telemetry-ingest.md,
docs/telemetry-reads.md). Through the real Envoy, on SQLite and PostgreSQL."""

from __future__ import annotations

import gzip
from collections.abc import Iterator

import httpx
import orjson
import pytest

from tests.integration.conftest import PASSWORD
from tests.integration.stack import Stack

pytestmark = pytest.mark.integration

VOLTAGES = [12.1, 12.4, 13.9, 14.2, 14.0]  # one a minute from 10:00
POSITIONS = [(57.04699, 9.93909), (57.04697, 9.93808)]


def batch() -> list[dict[str, object]]:
    records: list[dict[str, object]] = [
        {"voltage": v, "@ts": f"2020-07-09T10:0{i}:00.500000Z", "state": "charging",
         "level": 90 + i, "@t": "obd.bat"}
        for i, v in enumerate(VOLTAGES)
    ]  # fmt: skip
    records += [
        {"utc": "10:11:53", "cog": 140.22, "nsat": 9, "alt": 34, "sog": 0, "@t": "track.pos",
         "@ts": f"2020-07-09T10:11:5{3 + i}.811839Z", "loc": {"lat": lat, "lon": lon}}
        for i, (lat, lon) in enumerate(POSITIONS)
    ]  # fmt: skip
    records.append({"@t": "obd.bat", "voltage": 99.0})  # no @ts: set aside, not stored
    return records


@pytest.fixture(scope="module")
def world(stack: Stack, ada: dict) -> dict[str, str]:
    car = stack.cli_json(
        "device", "create", "--user", "ada", "--device", "car", "--credentials", "c"
    )
    with stack.http() as http:
        login = http.post("/auth/login/", json={"email": ada["email"], "password": PASSWORD})
    assert login.status_code == 200, login.text
    return {**car, "jwt": login.json()["token"]}


@pytest.fixture(scope="module")
def client(stack: Stack) -> Iterator[httpx.Client]:
    with stack.http() as http:
        yield http


def push(client: httpx.Client, world: dict[str, str]) -> httpx.Response:
    """As the firmware posts: its default path, `token` scheme, unit-id, a gzip body."""
    return client.post(
        "/logbook/storage",
        content=gzip.compress(orjson.dumps(batch())),
        headers={
            "authorization": f"token {world['push_token']}",
            "unit-id": world["unit_id"],
            "content-type": "application/json",
            "content-encoding": "gzip",
        },
    )


def read(client: httpx.Client, world: dict[str, str], **params: str) -> list[dict[str, object]]:
    answer = client.get(
        "/logbook/storage/read/",
        params={
            "device_id": world["unit_id"],
            "from_utc": "2020-07-09T10:00:00.000Z",
            "to_utc": "2020-07-09T11:00:00.000Z",
            **params,
        },
        headers={"Authorization": f"Bearer {world['jwt']}"},
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert isinstance(body, list)
    return body


def test_pushed_records_are_read_back_once(client: httpx.Client, world: dict[str, str]) -> None:
    first = push(client, world)
    assert first.status_code == 200, first.text
    assert first.json() == {"stored": 7, "repeats": 0, "rejected": 1}
    again = push(client, world)  # the device lost our answer and sent the batch again
    assert again.json() == {"stored": 0, "repeats": 7, "rejected": 1}

    raw = read(client, world, field="obd.bat.voltage", field_type="float")
    assert [item["value"] for item in raw] == VOLTAGES

    buckets = read(
        client, world, field="obd.bat.voltage", field_type="float", aggregation="AVG",
        interval="2m",
    )  # fmt: skip
    assert [round(float(b["value"]), 6) for b in buckets] == [12.25, 14.05, 14.0]  # type: ignore[arg-type]
    assert buckets[0]["ts"] == "2020-07-09T10:00:00.500000Z"
    assert buckets[0]["max_ts"] == 1594288860500  # 10:01:00.500 in epoch milliseconds

    positions = read(client, world, field="track.pos.loc", field_type="geo_point")
    assert positions == [
        {"ts": "2020-07-09T10:11:53.811839Z", "location": {"lat": 57.04699, "lon": 9.93909}},
        {"ts": "2020-07-09T10:11:54.811839Z", "location": {"lat": 57.04697, "lon": 9.93808}},
    ]


def test_the_record_set_aside_is_listed_for_the_operator(
    stack: Stack, client: httpx.Client, world: dict[str, str]
) -> None:
    assert push(client, world).status_code == 200
    listed = stack.cli_json("telemetry", "rejects", "--user", "ada", "--device", "car")
    assert listed["count"] == 1
    assert listed["rejects"][0]["reason"] == "missing @ts"
