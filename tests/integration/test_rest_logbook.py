"""`GET /logbook/storage/read/` through the real Envoy, on SQLite and PostgreSQL.

Records are stored with the store's own insert into the stack's database; every expected
answer is computed here in Python from the points inserted, never by the server's code.
"""

from __future__ import annotations

import random
import statistics
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import httpx
import orjson
import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from server.storage import telemetry
from server.storage.db import Database
from server.storage.models import Device, TelemetryDirtyMinute
from tests import support
from tests.integration.conftest import PASSWORD
from tests.integration.stack import Stack

pytestmark = pytest.mark.integration

PATH = "/logbook/storage/read/"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
T0 = datetime(2020, 1, 1, tzinfo=UTC)
MINUTE = 60_000_000
HOUR = 60 * MINUTE


def us(moment: datetime) -> int:
    return (moment - EPOCH) // timedelta(microseconds=1)


def iso(ts_us: int) -> str:
    """The seed's form, computed with datetime (the server uses time.gmtime)."""
    return (EPOCH + timedelta(microseconds=ts_us)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


START = us(T0)
END = START + HOUR
RNG = random.Random(7)
#: Voltages at random times from 10 minutes before the hour to 10 after, plus the edges:
#: at from_utc (in), on the 10-minute boundaries (next bucket) and at to_utc (out). Nothing
#: falls in [START + 20 min, START + 30 min): an empty bucket.
VOLTAGE_TIMES = sorted(
    {
        *(
            t
            for t in (RNG.randrange(START - 10 * MINUTE, END + 10 * MINUTE) for _ in range(400))
            if not START + 20 * MINUTE <= t < START + 30 * MINUTE
        ),
        START,
        START + 10 * MINUTE,
        START + 40 * MINUTE,
        END - 1,
        END,
    }
)
VOLTAGES = [(t, round(RNG.uniform(11.5, 14.5), 3)) for t in VOLTAGE_TIMES]
#: Integer levels, and one float level that a long read truncates.
LEVELS: list[tuple[int, float]] = [
    (START + i * 7 * MINUTE + 11, RNG.randrange(0, 101)) for i in range(8)
]
LEVELS.append((START + 59 * MINUTE, 99.7))
POSITIONS = [
    (START + 5 * MINUTE + 811_839, 57.04699, 9.93909),
    (START + 5 * MINUTE + 6_248_421, 57.04697, 9.93808),
]
STATES: list[tuple[int, str]] = [
    (START + 3 * MINUTE, "charging"),
    (START + 4 * MINUTE, "overcharging"),
]


def _records() -> list[tuple[str, int, str]]:
    by_ts: dict[int, dict[str, Any]] = {}
    for t, v in VOLTAGES:
        by_ts.setdefault(t, {})["voltage"] = v
    for t, v in LEVELS:
        by_ts.setdefault(t, {})["level"] = v
    for t, state in STATES:
        by_ts.setdefault(t, {})["state"] = state
    # Values a numeric read skips: a numeric string, a boolean, a null, a missing key.
    skipped: dict[int, dict[str, Any]] = {
        START + 1: {"voltage": "13.1"},
        START + 2: {"voltage": True},
        START + 3: {"voltage": None},
        START + 4: {"state": 5},
    }
    for t, fields in skipped.items():
        assert t not in by_ts
        by_ts[t] = fields
    rows = [("obd.bat", t, orjson.dumps(f).decode()) for t, f in by_ts.items()]
    rows += [
        ("track.pos", t, orjson.dumps({"loc": {"lat": lat, "lon": lon}, "sog": 0}).decode())
        for t, lat, lon in POSITIONS
    ]
    rows.append(("track.pos", START + 7 * MINUTE, orjson.dumps({"loc": "nowhere"}).decode()))
    return rows


@pytest.fixture(scope="module")
def world(stack: Stack, ada: dict, bob: dict) -> dict[str, Any]:
    """Ada's car with the points above, Bob's car with one record, and their credentials."""
    car = stack.cli_json(
        "device", "create", "--user", "ada", "--device", "car", "--credentials", "c"
    )
    bobs = stack.cli_json(
        "device", "create", "--user", "bob", "--device", "bobcar", "--credentials", "c"
    )
    api_token = stack.cli_json("apitoken", "create", "--user", "ada", "--name", "reads")["token"]
    database = Database(stack.db_url)
    try:
        with database.session() as s:
            pks = {d.device_id: d.id for d in s.query(Device)}
            telemetry.store_records(s, pks["car"], _records())
            telemetry.store_records(s, pks["bobcar"], [("obd.bat", START, '{"voltage": 1}')])
    finally:
        database.dispose()
    with stack.http() as http:
        login = http.post("/auth/login/", json={"email": "ada@example.com", "password": PASSWORD})
        bob_login = http.post(
            "/auth/login/", json={"email": "bob@example.com", "password": PASSWORD}
        )
    return {
        "unit_id": car["unit_id"],
        "bob_unit_id": bobs["unit_id"],
        "bearer": {"Authorization": f"Bearer {login.json()['token']}"},
        "apitoken": {"Authorization": f"APIToken {api_token}"},
        "bob": {"Authorization": f"Bearer {bob_login.json()['token']}"},
    }


@pytest.fixture(scope="module")
def client(stack: Stack) -> Iterator[httpx.Client]:
    with stack.http() as http:
        yield http


def read(client: httpx.Client, world: dict, auth: str = "bearer", **params: str) -> httpx.Response:
    query = {"device_id": world["unit_id"], **params}
    return client.get(PATH, params=query, headers=world[auth])


HOUR_RANGE = {"from_utc": "2020-01-01T00:00:00.000Z", "to_utc": "2020-01-01T01:00:00.000Z"}


def expected_buckets(
    points: Sequence[tuple[int, float]], start: int, end: int, width: int, function: str
) -> list[dict[str, Any]]:
    groups: dict[int, list[tuple[int, float]]] = {}
    for t, v in points:
        if start <= t < end:
            groups.setdefault((t - start) // width, []).append((t, v))
    compute: Callable[[list[float]], float] = {  # type: ignore[assignment]
        "avg": statistics.fmean,
        "min": min,
        "max": max,
        "sum": sum,
        "count": len,
    }[function]
    return [
        {
            "max_ts": max(t for t, _ in group) // 1000,
            "ts": iso(min(t for t, _ in group)),
            "value": compute([v for _, v in group]),
        }
        for _, group in sorted(groups.items())
    ]


def assert_buckets(got: list[dict[str, Any]], want: list[dict[str, Any]]) -> None:
    assert [(b["max_ts"], b["ts"]) for b in got] == [(b["max_ts"], b["ts"]) for b in want]
    for g, w in zip(got, want, strict=True):
        assert set(g) == {"max_ts", "ts", "value"}
        assert g["value"] == pytest.approx(w["value"], rel=1e-9, abs=1e-9)


# --- the seed's two examples ---------------------------------------------------------------


def test_seed_positions(client: httpx.Client, world: dict) -> None:
    answer = client.get(
        f"{PATH}?device_id={world['unit_id']}&field=track.pos.loc&field_type=geo_point"
        "&from_utc=2020-01-01T00:00:00.000Z&to_utc=2020-01-01T01:00:00.000Z",
        headers=world["bearer"],
    )
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("application/json")
    assert answer.json() == [
        {"ts": iso(t), "location": {"lat": lat, "lon": lon}} for t, lat, lon in POSITIONS
    ]
    assert answer.json()[0]["ts"] == "2020-01-01T00:05:00.811839Z"


def test_seed_battery_voltage(client: httpx.Client, world: dict) -> None:
    answer = client.get(
        f"{PATH}?device_id={world['unit_id']}&field=obd.bat.voltage&field_type=float"
        "&aggregation=avg&from_utc=2020-01-01T00:00:00.000Z&to_utc=2020-01-01T01:00:00.000Z"
        "&interval=10m",
        headers=world["bearer"],
    )
    assert answer.status_code == 200, answer.text
    want = expected_buckets(VOLTAGES, START, END, 10 * MINUTE, "avg")
    assert len(want) == 5  # six buckets, one of them empty
    assert_buckets(answer.json(), want)


# --- the other forms -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["avg", "AVG", "Average", "average", "min", "MIN", "max", "Max", "sum", "SUM", "count"]
)
def test_every_aggregation_name(client: httpx.Client, world: dict, name: str) -> None:
    answer = read(
        client, world, field="obd.bat.voltage", aggregation=name, interval="10m", **HOUR_RANGE
    )
    assert answer.status_code == 200, answer.text
    function = {"average": "avg"}.get(name.lower(), name.lower())
    assert_buckets(answer.json(), expected_buckets(VOLTAGES, START, END, 10 * MINUTE, function))


@pytest.mark.parametrize(
    ("interval", "width"),
    [
        ("30s", MINUTE // 2),
        ("7m", 7 * MINUTE),
        ("1h", HOUR),
        ("1d", 24 * HOUR),
        ("90000ms", 90_000_000),
    ],
)
def test_intervals(client: httpx.Client, world: dict, interval: str, width: int) -> None:
    answer = read(
        client, world, field="obd.bat.voltage", aggregation="max", interval=interval, **HOUR_RANGE
    )
    assert answer.status_code == 200, answer.text
    assert_buckets(answer.json(), expected_buckets(VOLTAGES, START, END, width, "max"))


def test_a_week_interval_over_a_day(client: httpx.Client, world: dict) -> None:
    answer = read(
        client,
        world,
        field="obd.bat.voltage",
        aggregation="count",
        interval="1w",
        from_utc="2019-12-31T12:00:00Z",
        to_utc="2020-01-01T12:00:00Z",
    )
    start = START - 12 * HOUR
    want = expected_buckets(VOLTAGES, start, start + 24 * HOUR, 7 * 24 * HOUR, "count")
    assert answer.json() == want
    assert answer.json()[0]["value"] == len(VOLTAGES)


def test_without_interval_the_range_is_one_bucket(client: httpx.Client, world: dict) -> None:
    answer = read(client, world, field="obd.bat.voltage", aggregation="sum", **HOUR_RANGE)
    assert_buckets(answer.json(), expected_buckets(VOLTAGES, START, END, HOUR, "sum"))


def test_bucket_edges(client: httpx.Client, world: dict) -> None:
    """A sample at from_utc is in, one at to_utc out; one on a boundary opens its bucket."""
    answer = read(
        client, world, field="obd.bat.voltage", aggregation="count", interval="10m", **HOUR_RANGE
    )
    buckets = answer.json()
    assert buckets[0]["ts"] == iso(START)
    second = next(b for b in buckets if b["ts"] >= iso(START + 10 * MINUTE))
    assert second["ts"] == iso(START + 10 * MINUTE)
    assert buckets[-1]["max_ts"] == (END - 1) // 1000
    assert all(b["ts"] < iso(END) for b in buckets)
    # The empty bucket [20 min, 30 min) is absent: no bucket starts in it.
    assert not [
        b for b in buckets if iso(START + 20 * MINUTE) <= b["ts"] < iso(START + 30 * MINUTE)
    ]


@pytest.mark.parametrize(
    ("start", "end"),
    [
        ("2020-01-01T02:00:00+02:00", "2020-01-01T03:00:00+02:00"),
        ("2019-12-31T19:00:00.000-05:00", "2019-12-31T20:00:00-0500"),
        ("2020-01-01T00:00:00", "2020-01-01T01:00:00.000000000Z"),
    ],
)
def test_time_zones_in_the_query(client: httpx.Client, world: dict, start: str, end: str) -> None:
    answer = read(
        client,
        world,
        field="obd.bat.voltage",
        aggregation="min",
        interval="10m",
        from_utc=start,
        to_utc=end,
    )
    assert answer.status_code == 200, answer.text
    assert_buckets(answer.json(), expected_buckets(VOLTAGES, START, END, 10 * MINUTE, "min"))


def test_an_unencoded_plus_offset(client: httpx.Client, world: dict) -> None:
    """`+02:00` typed into a URL unencoded (a `+` that may be read as a space)."""
    answer = client.get(
        f"{PATH}?device_id={world['unit_id']}&field=obd.bat.voltage&aggregation=min"
        "&interval=10m&from_utc=2020-01-01T02:00:00+02:00&to_utc=2020-01-01T03:00:00+02:00",
        headers=world["bearer"],
    )
    assert answer.status_code == 200, answer.text
    assert_buckets(answer.json(), expected_buckets(VOLTAGES, START, END, 10 * MINUTE, "min"))


@pytest.mark.parametrize("aggregation", [None, "none", "NONE", ""])
def test_raw_floats(client: httpx.Client, world: dict, aggregation: str | None) -> None:
    params = {**HOUR_RANGE, "field": "obd.bat.voltage", "field_type": "float"}
    if aggregation is not None:
        params["aggregation"] = aggregation
    answer = read(client, world, **params)
    assert answer.status_code == 200, answer.text
    assert answer.json() == [{"ts": iso(t), "value": v} for t, v in VOLTAGES if START <= t < END]


def test_raw_longs_are_integers(client: httpx.Client, world: dict) -> None:
    answer = read(client, world, field="obd.bat.level", field_type="long", **HOUR_RANGE)
    assert answer.json() == [{"ts": iso(t), "value": int(v)} for t, v in LEVELS]
    assert answer.json()[-1]["value"] == 99


def test_aggregated_longs(client: httpx.Client, world: dict) -> None:
    whole = [(t, int(v)) for t, v in LEVELS]
    for function in ("sum", "avg", "max"):
        answer = read(
            client,
            world,
            field="obd.bat.level",
            field_type="long",
            aggregation=function,
            interval="30m",
            **HOUR_RANGE,
        )
        assert_buckets(answer.json(), expected_buckets(whole, START, END, 30 * MINUTE, function))


def test_raw_strings(client: httpx.Client, world: dict) -> None:
    answer = read(client, world, field="obd.bat.state", field_type="string", **HOUR_RANGE)
    assert answer.json() == [{"ts": iso(t), "value": v} for t, v in STATES]


def test_size_caps_raw_and_aggregated_reads(client: httpx.Client, world: dict) -> None:
    raw = read(client, world, field="obd.bat.voltage", size="3", **HOUR_RANGE)
    assert raw.json() == [{"ts": iso(t), "value": v} for t, v in VOLTAGES if START <= t < END][:3]
    buckets = read(
        client,
        world,
        field="obd.bat.voltage",
        aggregation="avg",
        interval="1m",
        size="4",
        **HOUR_RANGE,
    )
    want = expected_buckets(VOLTAGES, START, END, MINUTE, "avg")[:4]
    assert_buckets(buckets.json(), want)


def test_device_id_and_api_token(client: httpx.Client, world: dict) -> None:
    by_unit = read(client, world, "apitoken", field="obd.bat.voltage", **HOUR_RANGE)
    by_id = read(client, world, "apitoken", device_id="car", field="obd.bat.voltage", **HOUR_RANGE)
    upper = read(
        client, world, device_id=world["unit_id"].upper(), field="obd.bat.voltage", **HOUR_RANGE
    )
    assert by_unit.status_code == by_id.status_code == upper.status_code == 200
    assert by_unit.json() == by_id.json() == upper.json()
    assert len(by_unit.json()) > 100


def test_no_trailing_slash_and_an_unknown_field(client: httpx.Client, world: dict) -> None:
    answer = client.get(
        PATH.rstrip("/"),
        params={"device_id": "car", "field": "no.such.field", **HOUR_RANGE},
        headers=world["bearer"],
    )
    assert answer.status_code == 200
    assert answer.json() == []


# --- errors --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "word"),
    [
        ({"field_type": "double"}, "field_type"),
        ({"interval": "10x", "aggregation": "avg"}, "interval"),
        ({"interval": "0m", "aggregation": "avg"}, "interval"),
        ({"interval": "-1m", "aggregation": "avg"}, "interval"),
        ({"interval": "1.5h", "aggregation": "avg"}, "interval"),
        ({"interval": "m", "aggregation": "avg"}, "interval"),
        ({"interval": "1ms", "aggregation": "avg", "to_utc": "2020-01-02T00:00:00Z"}, "buckets"),
        ({"aggregation": "median"}, "aggregation"),
        ({"aggregation": "avg", "field_type": "string"}, "numeric"),
        ({"aggregation": "max", "field_type": "geo_point"}, "numeric"),
        ({"from_utc": "yesterday"}, "from_utc"),
        ({"to_utc": "2020-13-01T00:00:00Z"}, "to_utc"),
        ({"from_utc": ""}, "from_utc"),
        ({"to_utc": "2019-12-31T23:00:00Z"}, "later"),
        ({"to_utc": "2020-01-01T00:00:00Z"}, "later"),
        ({"size": "0"}, "size"),
        ({"size": "-5"}, "size"),
        ({"size": "many"}, "size"),
        ({"size": "100001"}, "size"),
        ({"field": "voltage"}, "field"),
        ({"field": "obd.bat."}, "field"),
        ({"field": ".obd.bat"}, "field"),
        ({"field": "obd..bat"}, "field"),
        ({"field": 'obd.bat."x'}, "field"),
        ({"field": ""}, "field"),
        ({"device_id": ""}, "device_id"),
    ],
)
def test_bad_parameters_are_400(
    client: httpx.Client, world: dict, params: dict[str, str], word: str
) -> None:
    query = {"field": "obd.bat.voltage", **HOUR_RANGE, **params}
    answer = read(client, world, **query)
    assert answer.status_code == 400, answer.text
    body = answer.json()
    assert set(body) == {"detail"}
    assert word in body["detail"]


@pytest.mark.parametrize("header", [None, "Bearer nope", "APIToken nope", "Token x"])
def test_bad_credentials_are_401(client: httpx.Client, world: dict, header: str | None) -> None:
    headers = {"Authorization": header} if header else {}
    answer = client.get(
        PATH, params={"device_id": "car", "field": "obd.bat.voltage", **HOUR_RANGE}, headers=headers
    )
    assert answer.status_code == 401
    assert set(answer.json()) == {"detail"}


def test_a_device_the_caller_may_not_see_is_a_missing_one(
    client: httpx.Client, world: dict
) -> None:
    answers = [
        read(client, world, device_id=device, field="obd.bat.voltage", **HOUR_RANGE)
        for device in (
            "bobcar",
            world["bob_unit_id"],
            "nosuchcar",
            "00000000-0000-0000-0000-000000000000",
            "bad id!",
        )
    ]
    assert {a.status_code for a in answers} == {404}
    assert len({a.content for a in answers}) == 1
    assert answers[0].json() == {"detail": "Not found."}
    # Bob reads his own car; and Ada's is as missing to him as a car that does not exist.
    mine = read(client, world, "bob", device_id="bobcar", field="obd.bat.voltage", **HOUR_RANGE)
    assert mine.json() == [{"ts": iso(START), "value": 1.0}]
    theirs = read(client, world, "bob", field="obd.bat.voltage", **HOUR_RANGE)
    assert theirs.status_code == 404
    assert theirs.content == answers[0].content


def test_a_scoped_token_reads_only_its_devices(
    client: httpx.Client, stack: Stack, world: dict
) -> None:
    """A Thinger user token limited to one device: the other is as missing as any."""
    auth = {"Authorization": f"Bearer {stack.thinger_token('ada')}"}

    def scoped(device: str, actions: list[str]) -> dict[str, str]:
        created = client.post(
            "/v1/users/ada/tokens",
            json={
                "token_name": f"{device}-{'-'.join(actions)}",
                "token_permissions": [{"device": device, "actions": actions}],
            },
            headers=auth,
        )
        assert created.status_code == 200, created.text
        return {"Authorization": f"Bearer {created.json()['token']}"}

    params = {"device_id": "car", "field": "obd.bat.voltage", "size": "1", **HOUR_RANGE}
    reads_car = client.get(PATH, params=params, headers=scoped("car", ["read"]))
    assert reads_car.status_code == 200, reads_car.text
    assert len(reads_car.json()) == 1
    for headers in (scoped("truck", ["read"]), scoped("car", ["call"])):
        refused = client.get(PATH, params=params, headers=headers)
        assert refused.status_code == 404
        assert refused.json() == {"detail": "Not found."}


def test_the_same_read_over_grpc(stack: Stack, client: httpx.Client, world: dict) -> None:
    """The generated stub on the gateway's port: the same items as the REST answer."""
    from google.protobuf import json_format
    from thingwire.telemetry.v1 import logbook_pb2, logbook_pb2_grpc

    params = {
        "device_id": world["unit_id"],
        "field": "obd.bat.voltage",
        "aggregation": "AVG",
        "interval": "10m",
        **HOUR_RANGE,
    }
    with grpc.insecure_channel(stack.grpc_target) as channel:
        stub = logbook_pb2_grpc.LogbookReadServiceStub(channel)
        metadata = (("authorization", world["bearer"]["Authorization"]),)
        answer = stub.ReadLogbook(logbook_pb2.ReadLogbookRequest(**params), metadata=metadata)
        with pytest.raises(grpc.RpcError) as info:
            stub.ReadLogbook(
                logbook_pb2.ReadLogbookRequest(**{**params, "interval": "10x"}), metadata=metadata
            )
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert json_format.MessageToDict(answer) == read(client, world, **params).json()


_PARAMS = [
    "device_id",
    "field",
    "field_type",
    "from_utc",
    "to_utc",
    "aggregation",
    "interval",
    "size",
]
_TEXT = st.text(max_size=40) | st.sampled_from(
    [
        "car",
        "obd.bat.voltage",
        "track.pos.loc",
        "geo_point",
        "long",
        "AVG",
        "count",
        "1ms",
        "999999999999w",
        "2020-01-01T00:00:00Z",
        "0001-01-01T00:00:00Z",
        "9999-12-31T23:59:59.999999Z",
        "100000",
        "-1",
    ]
)


@settings(
    max_examples=120,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(query=st.dictionaries(st.sampled_from(_PARAMS), _TEXT, max_size=8))
def test_any_query_gets_a_clean_answer(
    client: httpx.Client, world: dict, query: dict[str, str]
) -> None:
    """Whatever the query string holds: 200 with an array, or 400/404 in AutoPi's shape."""
    answer = client.get(PATH, params=query, headers=world["bearer"])
    assert answer.status_code in (200, 400, 404), (query, answer.status_code, answer.text)
    body = answer.json()
    if answer.status_code == 200:
        assert isinstance(body, list)
    else:
        assert list(body) == ["detail"]
        assert isinstance(body["detail"], str)


@pytest.mark.parametrize(
    "params",
    [
        {"from_utc": "0001-01-01T00:00:00+02:00", "to_utc": "9999-12-31T23:59:59.999999Z"},
        {
            "from_utc": "0001-01-01T00:00:00Z",
            "to_utc": "9999-12-31T23:59:59Z",
            "aggregation": "count",
            "interval": "1000w",
        },
        {
            "from_utc": "1900-01-01T00:00:00Z",
            "to_utc": "2100-01-01T00:00:00Z",
            "aggregation": "max",
            "interval": "999999999999w",
        },
    ],
)
def test_extreme_ranges(client: httpx.Client, world: dict, params: dict[str, str]) -> None:
    answer = read(client, world, field="obd.bat.voltage", **params)
    assert answer.status_code == 200, answer.text
    values = [v for _, v in VOLTAGES]
    if "aggregation" not in params:
        assert [item["value"] for item in answer.json()] == values
    elif params["aggregation"] == "count":
        assert sum(item["value"] for item in answer.json()) == len(values)
    else:
        assert answer.json() == [
            {"max_ts": VOLTAGES[-1][0] // 1000, "ts": iso(VOLTAGES[0][0]), "value": max(values)}
        ]


@pytest.mark.parametrize(
    "query",
    [
        "field=obd.bat.voltage&field=obd.bat.level",
        "field=obd.bat.%FF",
        "field=obd.bat.voltage&from_utc=%FF%FE",
        "field=obd.bat.voltage&size=1&unknown=1",
        "field=obd.bat.voltage&size=%00",
        "field=obd.bat.voltage&device_id=car%00",
    ],
)
def test_odd_query_strings(client: httpx.Client, world: dict, query: str) -> None:
    answer = client.get(
        f"{PATH}?device_id=car&from_utc=2020-01-01T00:00:00Z&to_utc=2020-01-01T01:00:00Z&{query}",
        headers=world["bearer"],
    )
    assert answer.status_code in (200, 400, 404), answer.text
    assert answer.headers["content-type"].startswith("application/json")
    body = answer.json()
    assert isinstance(body, list) or list(body) == ["detail"], body


# --- rollups ------------------------------------------------------------------------------


def wait_until_folded(stack: Stack) -> None:
    support.wait_until_folded(stack.db_url, TelemetryDirtyMinute)


@pytest.mark.parametrize("function", ["avg", "min", "max", "sum", "count"])
def test_folded_rollups_answer_as_the_samples_do(
    stack: Stack, client: httpx.Client, world: dict, function: str
) -> None:
    wait_until_folded(stack)
    for interval, width in (
        ("1m", MINUTE),
        ("10m", 10 * MINUTE),
        ("7m", 7 * MINUTE),
        ("30s", MINUTE // 2),
        (None, END - START),
    ):
        extra = {} if interval is None else {"interval": interval}
        answer = read(
            client, world, field="obd.bat.voltage", aggregation=function, **extra, **HOUR_RANGE
        )
        assert answer.status_code == 200, answer.text
        want = expected_buckets(VOLTAGES, START, END, width, function)
        assert_buckets(answer.json(), want)
    ragged = {"from_utc": iso(START + 1_234_567), "to_utc": iso(END - 7_654_321)}
    answer = read(client, world, field="obd.bat.voltage", aggregation=function, **ragged)
    assert answer.status_code == 200, answer.text
    want = expected_buckets(VOLTAGES, START + 1_234_567, END - 7_654_321, HOUR, function)
    assert_buckets(answer.json(), want)


def test_a_late_record_counts_at_once_and_after_the_fold(
    stack: Stack, client: httpx.Client
) -> None:
    """An agent's outbox after an outage: a record older than what is folded already."""
    device = stack.cli_json(
        "device", "create", "--user", "ada", "--device", "latecar", "--credentials", "c"
    )
    with stack.http() as http:
        login = http.post("/auth/login/", json={"email": "ada@example.com", "password": PASSWORD})
    headers = {"Authorization": f"Bearer {login.json()['token']}"}
    database = Database(stack.db_url)
    query = {
        "device_id": device["unit_id"],
        "field": "obd.bat.voltage",
        "aggregation": "sum",
        "interval": "1m",
        **HOUR_RANGE,
    }

    def store(rows: list[tuple[int, float]]) -> None:
        with database.session() as s:
            pk = s.scalar(sa.select(Device.id).where(Device.device_id == "latecar"))
            assert pk is not None
            records = [("obd.bat", t, orjson.dumps({"voltage": v}).decode()) for t, v in rows]
            telemetry.store_records(s, pk, records)

    try:
        store([(START + 10_000_000, 1.0), (START + 70_000_000, 2.0)])
        wait_until_folded(stack)
        first = client.get(PATH, params=query, headers=headers).json()
        assert [b["value"] for b in first] == [1.0, 2.0]
        store([(START + 5_000_000, 0.5), (START + 10_000_000, 100.0)])  # late, and a repeat
        late = client.get(PATH, params=query, headers=headers).json()
        assert [b["value"] for b in late] == [1.5, 2.0]
        assert late[0]["ts"] == iso(START + 5_000_000)
        wait_until_folded(stack)
        assert client.get(PATH, params=query, headers=headers).json() == late
    finally:
        database.dispose()
