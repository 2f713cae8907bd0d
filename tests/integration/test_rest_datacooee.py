"""The Datacooee data API through the real gateway: upload, the eight fetch endpoints with
every documented parameter form, and their errors, on SQLite and PostgreSQL.

The document's example URLs and raw bodies are kept literally, whatever their length.
"""
# ruff: noqa: E501

from __future__ import annotations

import json
import statistics as py_stats
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import httpx
import orjson
import pytest
from google.protobuf import duration_pb2, timestamp_pb2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from thingwire.inputs.v1 import input_data_pb2 as pb
from thingwire.inputs.v1 import input_data_pb2_grpc

from server.storage import input_data
from server.storage.db import Database
from server.storage.input_data import NewPoint
from server.storage.models import InputDirtyHour
from tests import support
from tests.integration.stack import Stack

pytestmark = pytest.mark.integration

API = "/api/external/v1"
VND = "application/vnd.api+json"
#: The base of the historic values: 2020-10-10 00:00 UTC, one value an hour.
BASE = datetime(2020, 10, 10, tzinfo=UTC)


@dataclass
class Org:
    id: str
    key: str
    inputs: dict[str, str]  # name -> id
    asset: int

    @property
    def headers(self) -> dict[str, str]:
        return {"organization-id": self.id, "organization-api-key": self.key}


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def document(input_id: str, value: object, timestamp: str, **attributes: object) -> dict:
    return {
        "data": {
            "type": "SensorData",
            "id": "null",
            "attributes": {"value": value, "timestamp": timestamp, **attributes},
            "relationships": {"sensor": {"data": {"type": "Sensor", "id": input_id}}},
        }
    }


def upload(
    http: httpx.Client, org: Org, input_id: str, body: Any, **headers: str
) -> httpx.Response:
    # json, not orjson: the fuzz tests send integers beyond 64 bits, as clients may.
    content = body if isinstance(body, bytes | str) else json.dumps(body).encode()
    return http.post(
        f"{API}/inputs/{input_id}/inputdata/",
        content=content,
        headers={"content-type": VND, **org.headers, **headers},
    )


def make_org(stack: Stack, name: str, inputs: list[tuple[str, str]], asset: list[str]) -> Org:
    created = stack.cli_json("org", "create", "--name", name)
    ids = {
        label: stack.cli_json(
            "input", "create", "--org", created["id"], "--name", label, "--unit", unit
        )["id"]
        for label, unit in inputs
    }
    asset_row = stack.cli_json(
        "asset",
        "create",
        "--org",
        created["id"],
        "--name",
        f"{name} car",
        "--inputs",
        ",".join(ids[a] for a in asset),
    )
    return Org(created["id"], created["api_key"], ids, asset_row["id"])


@pytest.fixture(scope="module")
def http(stack: Stack) -> Iterator[httpx.Client]:
    with stack.http() as client:
        yield client


#: Values of "temp": hour n of BASE has value n (n = 0..9); lat/long on even hours,
#: metadata and an x-axis value on hour 0. Values of "rpm": 12.5 + n at hours 0..4, sent
#: as JSON numbers, and the text "off" at hour 5.
TEMP = [(BASE + timedelta(hours=n), str(n)) for n in range(10)]
RPM = [(BASE + timedelta(hours=n), 12.5 + n) for n in range(5)]


@pytest.fixture(scope="module")
def acme(stack: Stack, http: httpx.Client) -> Org:
    org = make_org(
        stack,
        "acme",
        [
            ("temp", "C"),
            ("rpm", "rpm"),
            ("empty", ""),
            ("recent", "V"),
            ("bulk", ""),
            ("uploads", ""),
        ],
        ["temp", "rpm"],
    )
    for n, (moment, value) in enumerate(TEMP):
        extra: dict[str, object] = {}
        if n % 2 == 0:
            extra = {"latitude": str(40 + n / 10), "longitude": -73.5 - n}
        if n == 0:
            extra |= {"metadata": {"trip": 7}, "x_axis_value": "km 0"}
        answer = upload(
            http, org, org.inputs["temp"], document(org.inputs["temp"], value, iso(moment), **extra)
        )
        assert answer.status_code == 201, answer.text
    for moment, number in RPM:
        answer = upload(
            http, org, org.inputs["rpm"], document(org.inputs["rpm"], number, iso(moment))
        )
        assert answer.status_code == 201, answer.text
    off = document(org.inputs["rpm"], "off", iso(BASE + timedelta(hours=5)))
    assert upload(http, org, org.inputs["rpm"], off).status_code == 201
    now = datetime.now(UTC)
    for days, value in [(0.05, "1"), (2, "2"), (10, "3")]:
        stamp = iso(now - timedelta(days=days))
        answer = upload(
            http, org, org.inputs["recent"], document(org.inputs["recent"], value, stamp)
        )
        assert answer.status_code == 201, answer.text
    # 1,001 values straight into the database: more than the default limit.
    database = Database(stack.db_url)
    try:
        with database.session() as s:
            input_data.insert_points(
                s,
                org.inputs["bulk"],
                [NewPoint(n * 1_000_000, str(n), float(n)) for n in range(1001)],
            )
    finally:
        database.dispose()
    return org


@pytest.fixture(scope="module")
def other(stack: Stack) -> Org:
    return make_org(stack, "other", [("theirs", "C")], ["theirs"])


def get(http: httpx.Client, org: Org, url: str, **kwargs: Any) -> httpx.Response:
    return http.get(url, headers=org.headers, **kwargs)


def ok(answer: httpx.Response) -> Any:
    assert answer.status_code == 200, answer.text
    return answer.json()


def error(answer: httpx.Response, status: int) -> str:
    """The detail of a Datacooee error answer, after checking its status and shape."""
    assert answer.status_code == status, answer.text
    body = answer.json()
    assert list(body) == ["errors"], body
    assert body["errors"][0]["status"] == str(status), body
    detail = body["errors"][0]["detail"]
    assert isinstance(detail, str)
    return detail


def values(entry: dict) -> list[str]:
    return [v["value"] for v in entry["inputdata"]]


# --- upload -------------------------------------------------------------------------------


def test_the_documented_upload_is_echoed_with_a_real_id(http: httpx.Client, acme: Org) -> None:
    input_id = acme.inputs["uploads"]
    # The document's curl body, byte for byte, with a real input id.
    body = (
        '{"data":{"type":"SensorData", "id": "null", "attributes": { "value": "12.5", '
        '"timestamp": "2020-10-13T14:02:39.489Z"}, "relationships": { "sensor": { "data": '
        f'{{ "type": "Sensor", "id": "{input_id}" }}}}}}}}}}'
    )
    answer = upload(http, acme, input_id, body)
    assert answer.status_code == 201, answer.text
    assert answer.headers["content-type"] == VND
    echoed = answer.json()
    stored_id = echoed["data"]["id"]
    assert stored_id.isdigit()
    assert stored_id != "null"
    assert echoed == {
        "data": {
            "type": "SensorData",
            "id": stored_id,
            "attributes": {"timestamp": "2020-10-13T14:02:39.489000Z", "value": "12.5"},
            "relationships": {"sensor": {"data": {"type": "Sensor", "id": input_id}}},
        }
    }
    # Another time is another resource, with another id.
    later = upload(http, acme, input_id, document(input_id, "13", "2020-10-13T14:02:40Z"))
    assert later.status_code == 201
    assert later.json()["data"]["id"] not in ("null", stored_id)


def test_an_upload_sent_again_is_stored_once_and_the_first_value_wins(
    http: httpx.Client, acme: Org
) -> None:
    input_id = acme.inputs["uploads"]
    first = upload(http, acme, input_id, document(input_id, "1", "2021-01-01T00:00:00Z"))
    # The same instant spelled with an offset, and another value: the stored one answers.
    again = upload(http, acme, input_id, document(input_id, "2", "2021-01-01T02:00:00+02:00"))
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    assert again.json()["data"]["attributes"]["value"] == "1"
    fetched = ok(
        get(
            http,
            acme,
            f"{API}/get_inputdata_by_inputs?input_ids={input_id}&timeperiod_start=2021-01-01&timeperiod_finish=2021-01-02",
        )
    )
    assert values(fetched[0]) == ["1"]


def test_a_time_an_offset_takes_past_either_end_of_the_calendar_is_stored_and_read(
    stack: Stack, http: httpx.Client
) -> None:
    edge = make_org(stack, "edge", [("edge", "")], ["edge"])
    input_id = edge.inputs["edge"]
    for value, stamp in [
        ("late", "9999-12-31T23:59:59-23:59"),
        ("early", "0001-01-01T00:00:00+23:59"),
    ]:
        answer = upload(http, edge, input_id, document(input_id, value, stamp))
        assert answer.status_code == 201, answer.text
    window = (
        "timeperiod_start=0001-01-01T00:00:00%2B23:59&timeperiod_finish=9999-12-31T23:59:59-23:59"
    )
    fetched = ok(get(http, edge, f"{API}/get_inputdata_by_inputs?input_ids={input_id}&{window}"))
    assert [(v["timestamp"], v["value"]) for v in fetched[0]["inputdata"]] == [
        ("0000-12-31T00:01:00.000000Z", "early"),
        ("10000-01-01T23:58:59.000000Z", "late"),
    ]
    # A lookback reads the late value too (it is after now): it answers as well.
    assert ok(
        get(
            http,
            edge,
            f"{API}/get_inputdata_by_inputs?input_ids={input_id}&timeperiod_last=36500_days",
        )
    )


def test_upload_forms_numbers_coordinates_and_paths(http: httpx.Client, acme: Org) -> None:
    input_id = acme.inputs["uploads"]
    body = document(
        input_id,
        12.5,
        "2022-03-04T05:06:07.123456789Z",
        latitude=40.730610,
        longitude="-73.935242",
        metadata={"a": [1, 2]},
        x_axis_value=3,
    )
    answer = http.post(
        f"{API}/inputs/{input_id}/inputdata",  # without the trailing slash
        content=orjson.dumps(body),
        headers={"content-type": "application/json", **acme.headers},
    )
    assert answer.status_code == 201, answer.text
    attributes = answer.json()["data"]["attributes"]
    assert attributes == {
        "timestamp": "2022-03-04T05:06:07.123456Z",
        "value": "12.5",
        "latitude": 40.73061,
        "longitude": -73.935242,
        "metadata": {"a": [1, 2]},
        "x_axis_value": "3",
    }
    # Without relationships the path names the input.
    bare = {
        "data": {
            "type": "SensorData",
            "attributes": {"value": "7", "timestamp": "2022-03-04T05:06:08Z"},
        }
    }
    assert upload(http, acme, input_id, bare).status_code == 201


def test_concurrent_repeats_of_one_upload_store_one_row(stack: Stack, acme: Org) -> None:
    input_id = acme.inputs["uploads"]
    body = orjson.dumps(document(input_id, "5", "2023-05-05T05:05:05.5Z"))

    def send(_: int) -> httpx.Response:
        with stack.http() as client:
            return upload(client, acme, input_id, body)

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(send, range(8)))
    assert {a.status_code for a in answers} == {201}
    assert len({a.json()["data"]["id"] for a in answers}) == 1


def test_the_path_names_the_input_whatever_the_query_says(http: httpx.Client, acme: Org) -> None:
    uploads, empty = acme.inputs["uploads"], acme.inputs["empty"]
    bare = {
        "data": {
            "type": "SensorData",
            "attributes": {"value": "1", "timestamp": "2024-02-02T00:00:00Z"},
        }
    }
    answer = http.post(
        f"{API}/inputs/{uploads}/inputdata/?input_pk={empty}",
        content=orjson.dumps(bare),
        headers={"content-type": VND, **acme.headers},
    )
    assert answer.status_code == 201, answer.text
    assert answer.json()["data"]["relationships"]["sensor"]["data"]["id"] == uploads
    stored = ok(
        get(
            http,
            acme,
            f"{API}/get_inputdata_by_inputs?input_ids={empty}&timeperiod_start=2024-02-02&timeperiod_finish=2024-02-03",
        )
    )
    assert stored[0]["inputdata"] == []


BAD_UPLOADS = [
    (b"", "empty"),
    (b"{", "not valid JSON"),
    (b"[1]", "JSON object"),
    (b'{"data": 1}', "data must be"),
    (
        b'{"data": {"type": "Other", "attributes": {"value": "1", "timestamp": "2020-01-01T00:00:00Z"}}}',
        "data.type",
    ),
    (b'{"data": {"attributes": {"value": "1", "timestamp": "2020-01-01T00:00:00Z"}}}', "data.type"),
    (b'{"data": {"type": "SensorData"}}', "data.attributes"),
    (
        b'{"data": {"type": "SensorData", "attributes": {"timestamp": "2020-01-01T00:00:00Z"}}}',
        "value is required",
    ),
    (
        b'{"data": {"type": "SensorData", "attributes": {"value": true, "timestamp": "2020-01-01T00:00:00Z"}}}',
        "string or a number",
    ),
    (
        b'{"data": {"type": "SensorData", "attributes": {"value": {"x": 1}, "timestamp": "2020-01-01T00:00:00Z"}}}',
        "string or a number",
    ),
    (b'{"data": {"type": "SensorData", "attributes": {"value": "1"}}}', "timestamp is required"),
    (
        b'{"data": {"type": "SensorData", "attributes": {"value": "1", "timestamp": "yesterday"}}}',
        "ISO-8601",
    ),
    (
        b'{"data": {"type": "SensorData", "attributes": {"value": "1", "timestamp": "2020-13-01T00:00:00Z"}}}',
        "ISO-8601",
    ),
    (
        b'{"data": {"type": "SensorData", "attributes": {"value": "1", "timestamp": 1602597759}}}',
        "ISO-8601",
    ),
    (
        b'{"data": {"type": "SensorData", "attributes": {"value": "1", "timestamp": "2020-01-01T00:00:00Z", "latitude": 91}}}',
        "latitude",
    ),
    (
        b'{"data": {"type": "SensorData", "attributes": {"value": "1", "timestamp": "2020-01-01T00:00:00Z", "longitude": "east"}}}',
        "longitude",
    ),
    (
        b'{"data": {"type": "SensorData", "attributes": {"value": "1", "timestamp": "2020-01-01T00:00:00Z"}, "relationships": {"sensor": {"data": {"type": "Sensor", "id": "senother000000"}}}}}',
        "input of the path",
    ),
    (
        b'{"data": {"type": "SensorData", "attributes": {"value": "1", "timestamp": "2020-01-01T00:00:00Z"}, "relationships": {"sensor": {"data": {"type": "Car", "id": "x"}}}}}',
        "Sensor",
    ),
    (
        b'{"data": {"type": "SensorData", "attributes": {"value": "1", "timestamp": "2020-01-01T00:00:00Z"}, "relationships": []}}',
        "relationships",
    ),
    (
        b'{"data": {"type": "SensorData", "attributes": {"value": "a\\u0000b", "timestamp": "2020-01-01T00:00:00Z"}}}',
        "NUL",
    ),
]


@pytest.mark.parametrize(("body", "message"), BAD_UPLOADS)
def test_a_bad_upload_is_a_400_naming_the_problem(
    http: httpx.Client, acme: Org, body: bytes, message: str
) -> None:
    assert message in error(upload(http, acme, acme.inputs["uploads"], body), 400)


def test_an_oversized_upload_is_a_413(http: httpx.Client, acme: Org) -> None:
    uploads = acme.inputs["uploads"]
    huge = document(uploads, "1", "2020-01-01T00:00:00Z", metadata="x" * (9 * 1024 * 1024))
    error(upload(http, acme, uploads, huge), 413)


def test_an_unknown_or_foreign_input_is_a_404(http: httpx.Client, acme: Org, other: Org) -> None:
    theirs = other.inputs["theirs"]
    foreign = error(upload(http, acme, theirs, document(theirs, "1", "2020-01-01T00:00:00Z")), 404)
    unknown = error(
        upload(
            http, acme, "sennosuchinput", document("sennosuchinput", "1", "2020-01-01T00:00:00Z")
        ),
        404,
    )
    assert foreign.replace(theirs, "X") == unknown.replace("sennosuchinput", "X")
    assert "not found" in error(
        get(http, acme, f"{API}/get_inputdata_by_inputs?input_ids={theirs}"), 404
    )
    # A NUL names no input (PostgreSQL would refuse to compare it): 404, not a 500.
    nul = document("sen\x00x", "1", "2020-01-01T00:00:00Z")
    error(upload(http, acme, "sen%00x", nul), 404)
    error(get(http, acme, f"{API}/get_inputdata_by_inputs?input_ids=sen%00x"), 404)


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"organization-id": "nope"},
        {"organization-api-key": "nope"},
        {"organization-id": "nope", "organization-api-key": "nope"},
        "wrong key",
        "other's key",
    ],
)
def test_bad_organisation_credentials_are_a_401(
    http: httpx.Client, acme: Org, other: Org, headers: Any
) -> None:
    if headers == "wrong key":
        headers = {"organization-id": acme.id, "organization-api-key": acme.key + "x"}
    elif headers == "other's key":
        headers = {"organization-id": acme.id, "organization-api-key": other.key}
    input_id = acme.inputs["temp"]
    posted = http.post(
        f"{API}/inputs/{input_id}/inputdata/",
        content=orjson.dumps(document(input_id, "1", "2020-01-01T00:00:00Z")),
        headers={"content-type": VND, **headers},
    )
    error(posted, 401)
    error(http.get(f"{API}/get_inputdata_by_inputs/?inputs_ids={input_id}", headers=headers), 401)
    error(
        http.get(
            f'{API}/get_latest_statistics_inputdata_by_asset/?asset_id="{acme.asset}"&timeperiod_last="5_days"',
            headers=headers,
        ),
        401,
    )


# --- the document's examples, literally -----------------------------------------------------


def test_the_documented_examples(http: httpx.Client, acme: Org) -> None:
    x, y, z = acme.inputs["temp"], acme.inputs["rpm"], acme.inputs["empty"]
    ids = f"{x},{y},{z}"
    examples = {
        "by inputs": f'{API}/get_inputdata_by_inputs/?inputs_ids="{ids}"&timeperiod_start="2020-10-03 15:31:55"&timeperiod_finish="2020-11-03 15:31:55"&order_by="timestamp"&sort_by="desc"',
        "latest": f'{API}/get_latest_inputdata_by_inputs/?inputs_ids="{ids}"&timeperiod_last="5_days"&order_by="timestamp"&sort_by="desc"',
        "statistics": f'{API}/get_statistics_inputdata_by_inputs/?inputs_ids="{ids}"&timeperiod_start="2020-10-03 15:31:55"&timeperiod_finish="2020-11-03 15:31:55"&aggregation_func="min,max,avg"',
        "statistics, last 5 days": f'{API}/get_statistics_inputdata_by_inputs/?inputs_ids="{ids}"&timeperiod_last="5_days"&aggregation_func="min,max,avg"',
        "by asset": f'{API}/get_inputdata_by_asset/?asset_id="{acme.asset}"&timeperiod_start="2020-10-03 15:31:55"&timeperiod_finish="2020-11-03 15:31:55"&order_by="timestamp"&sort_by="desc"',
        "latest by asset": f'{API}/get_latest_inputdata_by_asset/?asset_id="{acme.asset}"&timeperiod_last="5_days"&order_by="timestamp"&sort_by="desc"',
        "latest statistics by asset": f'{API}/get_latest_statistics_inputdata_by_asset/?asset_id="{acme.asset}"&timeperiod_last="5_days"&aggregation_func="min,max,avg"',
    }
    answers = {}
    for name, url in examples.items():
        request = http.build_request("GET", url, headers=acme.headers)
        # Sent as a client sends it: quotes and spaces percent-encoded.
        assert b"%22" in request.url.raw_path, name
        assert b" " not in request.url.raw_path, name
        answers[name] = ok(http.send(request))
    window = answers["by inputs"]
    assert [e["input"] for e in window] == [
        {"id": x, "name": "temp", "measure_unit": "C"},
        {"id": y, "name": "rpm", "measure_unit": "rpm"},
        {"id": z, "name": "empty", "measure_unit": ""},
    ]
    assert values(window[0]) == [str(n) for n in range(9, -1, -1)]
    assert window[0]["inputdata"][0] == {"timestamp": "2020-10-10T09:00:00.000000Z", "value": "9"}
    assert values(window[1]) == ["off", "16.5", "15.5", "14.5", "13.5", "12.5"]
    assert answers["latest"] == [{"input": e["input"], "inputdata": []} for e in window]
    stats = answers["statistics"]
    temp = [float(v) for _, v in TEMP]
    assert stats[0]["inputdata"] == [
        {"min": 0, "max": 9, "avg": pytest.approx(py_stats.fmean(temp))}
    ]
    rpm = [v for _, v in RPM]
    assert stats[1]["inputdata"] == [
        {"min": 12.5, "max": 16.5, "avg": pytest.approx(py_stats.fmean(rpm))}
    ]
    assert stats[2]["inputdata"] == [{"min": None, "max": None, "avg": None}]
    assert [e["inputdata"] for e in answers["statistics, last 5 days"]] == [
        [{"min": None, "max": None, "avg": None}]
    ] * 3
    asset = answers["by asset"]
    assert (asset["id"], asset["name"]) == (acme.asset, "acme car")
    by_id = {e["input"]["id"]: e for e in asset["inputs"]}
    assert [e["input"]["id"] for e in asset["inputs"]] == sorted([x, y])
    assert by_id[x] == window[0]
    assert by_id[y] == window[1]
    assert all(e["inputdata"] == [] for e in answers["latest by asset"]["inputs"])
    assert len(answers["latest statistics by asset"]["inputs"]) == 2


def test_the_documented_asset_id_of_input_ids_is_a_400(http: httpx.Client, acme: Org) -> None:
    ids = ",".join(acme.inputs[n] for n in ("temp", "rpm", "empty"))
    url = f'{API}/get_statistics_inputdata_by_asset/?asset_id="{ids}"&timeperiod_start="2020-10-03 15:31:55"&timeperiod_finish="2020-11-03 15:31:55"&aggregation_func="min,max,avg"'
    assert "asset_id must be an integer" in error(get(http, acme, url), 400)


# --- every parameter form -------------------------------------------------------------------


def test_every_spelling_of_the_parameters_gives_one_answer(http: httpx.Client, acme: Org) -> None:
    x, y = acme.inputs["temp"], acme.inputs["rpm"]
    base = f"{API}/get_inputdata_by_inputs"
    forms = [
        f'{base}/?inputs_ids="{x},{y}"&timeperiod_start="2020-10-10 02:00:00"&timeperiod_finish="2020-10-10 04:00:00"&limit="2"&sort_by="desc"',
        f"{base}?input_ids={x},{y}&timeperiod-start=2020-10-10 02:00:00&timeperiod-finish=2020-10-10 04:00:00&limit=2&sort_by=desc",
        f"{base}?input_ids={x}, {y}&timeperiod_start=2020-10-10T02:00:00Z&timeperiod_finish=2020-10-10T06:00:00%2B02:00&limit=2&sort_by=DESC",
        f"{base}?inputs_ids={x}&input_ids={y}&TIMEPERIOD-START='2020-10-10T04:00:00+02:00'&timeperiod_finish=2020-10-10 04:00&limit= 2 &sort_by=desc",
    ]
    answers = [ok(get(http, acme, form)) for form in forms]
    # And with the query built by the client library (spaces as "+").
    answers.append(
        ok(
            get(
                http,
                acme,
                base,
                params={
                    "inputs_ids": f'"{x}, {y}"',
                    "timeperiod-start": "2020-10-10 02:00:00",
                    "timeperiod-finish": '"2020-10-10 04:00:00"',
                    "limit": "2",
                    "sort_by": '"desc"',
                },
            )
        )
    )
    expected = [["4", "3"], ["16.5", "15.5"]]
    for answer in answers:
        assert [values(e) for e in answer] == expected, answer


def test_the_limit_is_per_input_with_a_default_of_1000(http: httpx.Client, acme: Org) -> None:
    bulk, temp = acme.inputs["bulk"], acme.inputs["temp"]
    default = ok(get(http, acme, f"{API}/get_inputdata_by_inputs?input_ids={bulk},{temp}"))
    assert [len(e["inputdata"]) for e in default] == [1000, 10]
    assert values(default[0])[:2] == ["0", "1"]
    assert values(default[0])[-1] == "999"
    three = ok(
        get(
            http,
            acme,
            f'{API}/get_inputdata_by_inputs?input_ids={bulk},{temp}&limit="3"&sort_by=desc',
        )
    )
    assert [values(e) for e in three] == [["1000", "999", "998"], ["9", "8", "7"]]
    big = ok(get(http, acme, f"{API}/get_inputdata_by_inputs?input_ids={bulk}&limit=10000"))
    assert len(big[0]["inputdata"]) == 1001


def test_ordering_by_value_and_by_date(http: httpx.Client, acme: Org) -> None:
    rpm = acme.inputs["rpm"]
    url = f"{API}/get_inputdata_by_inputs?input_ids={rpm}"
    assert values(ok(get(http, acme, url + "&order_by=value"))[0]) == [
        "12.5",
        "13.5",
        "14.5",
        "15.5",
        "16.5",
        "off",
    ]
    assert values(ok(get(http, acme, url + '&order_by="value"&sort_by="desc"'))[0]) == [
        "16.5",
        "15.5",
        "14.5",
        "13.5",
        "12.5",
        "off",
    ]
    by_date = values(ok(get(http, acme, url + "&order_by=date&sort_by=desc"))[0])
    assert by_date == values(ok(get(http, acme, url + "&order_by=timestamp&sort_by=desc"))[0])
    assert by_date[0] == "off"


def test_the_flags_add_location_metadata_and_x_axis(http: httpx.Client, acme: Org) -> None:
    temp = acme.inputs["temp"]
    url = f"{API}/get_inputdata_by_inputs?input_ids={temp}&limit=2"
    plain = ok(get(http, acme, url + "&is_add_lat_long=false&is_add_metadata=false"))[0][
        "inputdata"
    ]
    assert [sorted(v) for v in plain] == [["timestamp", "value"]] * 2
    full = ok(
        get(
            http, acme, url + '&is_add_lat_long="true"&is_add_metadata=true&is_add_x_axis_data=TRUE'
        )
    )[0]["inputdata"]
    assert full[0] == {
        "timestamp": "2020-10-10T00:00:00.000000Z",
        "value": "0",
        "latitude": 40.0,
        "longitude": -73.5,
        "metadata": {"trip": 7},
        "x_axis_value": "km 0",
    }
    assert full[1] == {
        "timestamp": "2020-10-10T01:00:00.000000Z",
        "value": "1",
        "latitude": None,
        "longitude": None,
        "metadata": None,
        "x_axis_value": None,
    }
    only_location = ok(get(http, acme, url + "&is_add_lat_long=1"))[0]["inputdata"][0]
    assert sorted(only_location) == ["latitude", "longitude", "timestamp", "value"]


def test_statistics_choose_functions_and_windows(http: httpx.Client, acme: Org) -> None:
    temp, bulk = acme.inputs["temp"], acme.inputs["bulk"]
    url = f"{API}/get_statistics_inputdata_by_inputs/?input_ids={temp},{bulk}"
    window = '&timeperiod_start="2020-10-10 03:00:00"&timeperiod_finish="2020-10-10 07:00:00"'
    answer = ok(get(http, acme, url + window + '&aggregation_func="max, MIN"'))
    assert answer[0]["inputdata"] == [{"min": 3, "max": 7}]
    only_avg = ok(get(http, acme, url + "&aggregation_func=avg"))
    assert only_avg[0]["inputdata"] == [{"avg": pytest.approx(4.5)}]
    # Over every value without a limit (1,001 of them), over the newest `limit` with one.
    assert only_avg[1]["inputdata"] == [{"avg": pytest.approx(py_stats.fmean(range(1001)))}]
    newest = ok(get(http, acme, url + "&aggregation_func=min,avg&limit=10"))
    assert newest[1]["inputdata"] == [
        {"min": 991, "avg": pytest.approx(py_stats.fmean(range(991, 1001)))}
    ]
    everything = ok(get(http, acme, url))
    assert sorted(everything[0]["inputdata"][0]) == ["avg", "max", "min"]


def test_latest_endpoints_read_the_last_period(http: httpx.Client, acme: Org) -> None:
    recent = acme.inputs["recent"]
    url = f"{API}/get_latest_inputdata_by_inputs?input_ids={recent}"
    assert values(ok(get(http, acme, url + "&timeperiod_last=1_day"))[0]) == ["1"]
    assert values(ok(get(http, acme, url + '&timeperiod-last="5_days"&sort_by=desc'))[0]) == [
        "1",
        "2",
    ]
    assert values(ok(get(http, acme, url + "&timeperiod_last=2_weeks"))[0]) == ["3", "2", "1"]
    assert values(ok(get(http, acme, url + "&timeperiod_last=3_hours"))[0]) == ["1"]
    assert values(ok(get(http, acme, url + "&timeperiod_last=65_days"))[0]) == ["3", "2", "1"]
    stats_url = f"{API}/get_latest_statistics_inputdata_by_inputs/?inputs_ids={recent}"
    stats = ok(
        get(http, acme, stats_url + '&timeperiod_last="1_week"&aggregation_func="min,max,avg"')
    )
    assert stats[0]["inputdata"] == [{"min": 1, "max": 2, "avg": 1.5}]
    assert "timeperiod_last is required" in error(get(http, acme, url), 400)


def test_asset_endpoints_and_their_input_filter(http: httpx.Client, acme: Org, other: Org) -> None:
    temp, rpm, empty = acme.inputs["temp"], acme.inputs["rpm"], acme.inputs["empty"]
    url = f'{API}/get_inputdata_by_asset?asset_id="{acme.asset}"&limit=1'
    only_rpm = ok(get(http, acme, url + f'&inputs_ids="{rpm}"'))
    assert [e["input"]["id"] for e in only_rpm["inputs"]] == [rpm]
    assert values(only_rpm["inputs"][0]) == ["12.5"]
    stats = ok(
        get(
            http,
            acme,
            f"{API}/get_statistics_inputdata_by_asset/?asset_id={acme.asset}&input_ids={temp}&aggregation_func=max",
        )
    )
    assert stats == {
        "id": acme.asset,
        "name": "acme car",
        "inputs": [
            {"input": {"id": temp, "name": "temp", "measure_unit": "C"}, "inputdata": [{"max": 9}]}
        ],
    }
    assert empty in error(get(http, acme, url + f"&input_ids={empty}"), 404)
    foreign = error(get(http, acme, f"{API}/get_inputdata_by_asset?asset_id={other.asset}"), 404)
    unknown = error(get(http, acme, f"{API}/get_inputdata_by_asset?asset_id=999999"), 404)
    # Beyond the column's range (a 32-bit integer on PostgreSQL): still simply not found.
    error(get(http, acme, f"{API}/get_inputdata_by_asset?asset_id={2**63 - 1}"), 404)
    error(get(http, acme, f"{API}/get_inputdata_by_asset?asset_id={2**63}"), 400)
    assert foreign.replace(str(other.asset), "N") == unknown.replace("999999", "N")
    assert "asset_id is required" in error(
        get(http, acme, f"{API}/get_latest_inputdata_by_asset?timeperiod_last=1_day"), 400
    )


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("", "input_ids is required"),
        ("&limit=0", "limit"),
        ("&limit=abc", "limit"),
        ("&limit=10001", "limit"),
        ("&limit=-1", "limit"),
        ("&sort_by=up", "sort_by"),
        ("&order_by=name", "order_by"),
        ("&is_add_lat_long=maybe", "is_add_lat_long"),
        ("&timeperiod_start=yesterday", "timeperiod_start"),
        ("&timeperiod_start=2020-10-11&timeperiod_finish=2020-10-10", "after"),
        ("&timeperiod_last=5_months", "timeperiod_last"),
        ("&timeperiod_last=0_days", "timeperiod_last"),
        ("&timeperiod_last=1_day&timeperiod_start=2020-10-10", "not both"),
        ("&limit=1&limit=2", "more than once"),
    ],
)
def test_bad_parameters_are_a_400(http: httpx.Client, acme: Org, query: str, message: str) -> None:
    ids = "" if message == "input_ids is required" else f"input_ids={acme.inputs['temp']}"
    assert message in error(get(http, acme, f"{API}/get_inputdata_by_inputs?{ids}{query}"), 400)


def test_bad_statistics_parameters_are_a_400(http: httpx.Client, acme: Org) -> None:
    url = f"{API}/get_statistics_inputdata_by_inputs?input_ids={acme.inputs['temp']}"
    assert "sum" in error(get(http, acme, url + "&aggregation_func=min,sum"), 400)
    too_many = ",".join(f"sen{n:010d}" for n in range(101))
    assert "at most 100" in error(
        get(http, acme, f"{API}/get_statistics_inputdata_by_inputs?input_ids={too_many}"), 400
    )


# --- gRPC through the gateway ---------------------------------------------------------------


@pytest.fixture(scope="module")
def stub(stack: Stack) -> Iterator[input_data_pb2_grpc.InputDataServiceStub]:
    with grpc.insecure_channel(stack.grpc_target) as channel:
        yield input_data_pb2_grpc.InputDataServiceStub(channel)


def test_grpc_stubs_use_the_typed_fields(
    stub: input_data_pb2_grpc.InputDataServiceStub, acme: Org
) -> None:
    metadata = tuple(acme.headers.items())
    start = timestamp_pb2.Timestamp()
    start.FromDatetime(BASE + timedelta(hours=7))
    answer = stub.GetInputDataByInputs(
        pb.GetInputDataByInputsRequest(
            input_ids=[acme.inputs["temp"]],
            start_time=start,
            limit_per_input=2,
            include_location=True,
            descending=True,
        ),
        metadata=metadata,
        timeout=10,
    )
    assert answer.content_type == "application/json"
    entries = orjson.loads(answer.data)
    assert [v["value"] for v in entries[0]["inputdata"]] == ["9", "8"]
    assert entries[0]["inputdata"][1]["latitude"] == pytest.approx(40.8)
    stats = stub.GetLatestStatisticsInputDataByAsset(
        pb.GetLatestStatisticsInputDataByAssetRequest(
            asset_pk=acme.asset,
            lookback=duration_pb2.Duration(seconds=3 * 86400),
            aggregations=[pb.AGGREGATION_MAX],
        ),
        metadata=metadata,
        timeout=10,
    )
    asset = orjson.loads(stats.data)
    assert asset["id"] == acme.asset
    assert [e["inputdata"] for e in asset["inputs"]] == [[{"max": None}]] * 2
    with pytest.raises(grpc.RpcError) as info:
        stub.GetLatestInputDataByInputs(
            pb.GetLatestInputDataByInputsRequest(input_ids=[acme.inputs["temp"]]),
            metadata=metadata,
            timeout=10,
        )
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.RpcError) as info:
        stub.GetInputDataByInputs(pb.GetInputDataByInputsRequest(input_ids=["x"]), timeout=10)
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED


# --- whatever an organisation sends -------------------------------------------------------

FETCH_PATHS = [
    f"{API}/get_inputdata_by_inputs",
    f"{API}/get_latest_inputdata_by_inputs/",
    f"{API}/get_statistics_inputdata_by_inputs",
    f"{API}/get_latest_statistics_inputdata_by_inputs/",
    f"{API}/get_inputdata_by_asset/",
    f"{API}/get_latest_inputdata_by_asset",
    f"{API}/get_statistics_inputdata_by_asset/",
    f"{API}/get_latest_statistics_inputdata_by_asset",
]
PARAMETER_NAMES = [
    "input_ids",
    "inputs_ids",
    "timeperiod_start",
    "timeperiod-start",
    "timeperiod_finish",
    "timeperiod-finish",
    "timeperiod_last",
    "timeperiod-last",
    "limit",
    "is_add_lat_long",
    "is_add_x_axis_data",
    "is_add_metadata",
    "order_by",
    "sort_by",
    "aggregation_func",
    "asset_id",
    "other",
]
texts = st.text(max_size=24) | st.sampled_from(
    [
        '"5_days"',
        "2020-10-10 03:00:00",
        "-1",
        "0",
        "99999999999999999999",
        '"',
        "\x00",
        "%00",
        "true",
    ]
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=10,
)


def assert_clean(answer: httpx.Response) -> None:
    assert answer.status_code < 500, (answer.status_code, answer.text)
    if answer.status_code >= 400:
        error(answer, answer.status_code)


@settings(
    max_examples=120,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    path=st.sampled_from(FETCH_PATHS),
    query=st.lists(st.tuples(st.sampled_from(PARAMETER_NAMES), texts), max_size=5),
    real=st.booleans(),
)
def test_any_fetch_gets_a_clean_answer(
    http: httpx.Client, acme: Org, path: str, query: list[tuple[str, str]], real: bool
) -> None:
    if real:  # Give the real ids often, so that the parameters behind them are reached.
        query = [("input_ids", acme.inputs["temp"]), ("asset_id", str(acme.asset)), *query]
    assert_clean(http.get(path, params=tuple(query), headers=acme.headers))


@settings(
    max_examples=120,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    attributes=st.dictionaries(
        st.sampled_from(
            ["value", "timestamp", "latitude", "longitude", "metadata", "x_axis_value", "x"]
        ),
        json_values | st.sampled_from(["2020-10-10T00:00:00Z", "12.5", "1e999"]),
        max_size=6,
    ),
    data_type=st.sampled_from(["SensorData", None, 1]),
)
def test_any_upload_gets_a_clean_answer(
    http: httpx.Client, acme: Org, attributes: dict, data_type: object
) -> None:
    body = {"data": {"type": data_type, "attributes": attributes}}
    answer = upload(http, acme, acme.inputs["uploads"], body)
    assert_clean(answer)
    if answer.status_code == 201:
        assert answer.json()["data"]["attributes"]["value"] is not None


# --- rollups ------------------------------------------------------------------------------


def wait_until_folded(stack: Stack) -> None:
    support.wait_until_folded(stack.db_url, InputDirtyHour)


def test_statistics_are_the_same_before_and_after_the_fold(
    stack: Stack, http: httpx.Client
) -> None:
    """Whole hours come from rollups once folded; a late upload counts at once."""
    org = make_org(stack, "rollups", [("temp", "C")], ["temp"])
    temp = org.inputs["temp"]
    start = datetime(2021, 3, 1, tzinfo=UTC)
    points = {
        start + timedelta(minutes=7 * i, seconds=i % 60): (i * 37) % 101 - 50 for i in range(60)
    }
    for moment, number in points.items():
        assert upload(http, org, temp, document(temp, str(number), iso(moment))).status_code == 201
    url = f"{API}/get_statistics_inputdata_by_inputs/?input_ids={temp}"
    windows = [
        "",
        '&timeperiod_start="2021-03-01 01:00:00"&timeperiod_finish="2021-03-01 05:00:00"',
        '&timeperiod_start="2021-03-01 00:13:20"&timeperiod_finish="2021-03-01 06:41:09"',
        '&timeperiod_start="2021-03-01 02:00:00"',
    ]
    bounds = [
        (None, None),
        (start + timedelta(hours=1), start + timedelta(hours=5)),
        (
            start + timedelta(minutes=13, seconds=20),
            start + timedelta(hours=6, minutes=41, seconds=9),
        ),
        (start + timedelta(hours=2), None),
    ]

    def expected() -> list[dict[str, float]]:
        answers = []
        for low, high in bounds:
            kept = [
                n
                for t, n in points.items()
                if (low is None or t >= low) and (high is None or t <= high)
            ]
            answers.append({"min": min(kept), "max": max(kept), "avg": py_stats.fmean(kept)})
        return answers

    def answers() -> list[dict[str, float]]:
        return [ok(get(http, org, url + window))[0]["inputdata"][0] for window in windows]

    def check() -> None:
        for got, want in zip(answers(), expected(), strict=True):
            assert got == {k: pytest.approx(v) for k, v in want.items()}

    check()
    wait_until_folded(stack)
    check()
    late = start + timedelta(hours=3, minutes=1)
    points[late] = 1000
    assert upload(http, org, temp, document(temp, "1000", iso(late))).status_code == 201
    check()
    wait_until_folded(stack)
    check()
