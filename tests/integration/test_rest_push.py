"""Devices pushing records over HTTP, through the real Envoy, as AutoPi firmware and the
AutoPi data guide's example server do (docs/telemetry-ingest.md); SQLite and PostgreSQL.

One stack per module and database kind, with a 1 MiB batch limit so that the limit is cheap
to pass; the gateway's own body limit stays at its 8 MiB default.
"""

from __future__ import annotations

import base64
import gzip
import itertools
import json
import zlib
from collections.abc import Iterator
from typing import Any

import grpc
import httpx
import pytest
import sqlalchemy as sa
from thingwire.telemetry.v1 import push_pb2, push_pb2_grpc

from server.storage.db import Database
from server.storage.models import Device, TelemetryRecord
from tests.integration.stack import Stack, stack_fixture

pytestmark = pytest.mark.integration

MAX_BATCH = 1024 * 1024
GATEWAY_LIMIT = 8 * 1024 * 1024
PATHS = ["/", "/logbook/storage", "/logbook/storage/"]

stack = stack_fixture(THINGWIRE_TELEMETRY_MAX_BATCH_BYTES=str(MAX_BATCH))

_minutes = itertools.count(1)


def records(count: int = 3) -> list[dict[str, Any]]:
    """Seed-shaped records with timestamps no other call of this module uses."""
    minute = next(_minutes)
    day, minute = divmod(minute, 1440)
    stamp = f"2024-02-{1 + day:02d}T{minute // 60:02d}:{minute % 60:02d}"
    shapes: list[dict[str, Any]] = [
        {"@t": "track.pos", "utc": "06:02:24", "cog": 140.22, "nsat": 9, "alt": 34, "sog": 0,
         "loc": {"lat": 57.02241, "lon": 9.89919}},
        {"@t": "obd.bat", "voltage": 15.4, "state": "overcharging", "level": 100},
        {"@t": "ec2x.data_usage", "sent": 2695, "recv": 4742},
        {"@t": "event.system.minion", "@tag": "system/minion/online"},
    ]  # fmt: skip
    return [
        {**shapes[i % len(shapes)], "@ts": f"{stamp}:{i // 1000:02d}.{i % 1000:03d}000Z"}
        for i in range(count)
    ]


@pytest.fixture(scope="module")
def client(stack: Stack) -> Iterator[httpx.Client]:
    with stack.http() as http:
        yield http


@pytest.fixture(scope="module")
def database(stack: Stack) -> Iterator[Database]:
    db = Database(stack.db_url)
    try:
        yield db
    finally:
        db.dispose()


def device(stack: Stack, user: str, name: str) -> dict[str, str]:
    """`{"device", "unit_id", "push_token"}` of a device made with the CLI."""
    return stack.cli_json(
        "device", "create", "--user", user, "--device", name, "--credentials", "c"
    )


@pytest.fixture(scope="module")
def car(stack: Stack, ada: dict) -> dict[str, str]:
    return device(stack, "ada", "car")


@pytest.fixture(scope="module")
def van(stack: Stack, ada: dict) -> dict[str, str]:
    return device(stack, "ada", "van")


@pytest.fixture(scope="module")
def truck(stack: Stack, bob: dict) -> dict[str, str]:
    return device(stack, "bob", "truck")


def token(dev: dict[str, str], scheme: str = "token") -> dict[str, str]:
    return {"authorization": f"{scheme} {dev['push_token']}"}


def push(
    client: httpx.Client,
    body: bytes | list[Any] | dict[str, Any],
    headers: dict[str, str],
    path: str = "/logbook/storage",
) -> httpx.Response:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return client.post(
        path, content=content, headers={"content-type": "application/json", **headers}
    )


def stored_count(database: Database, name: str) -> int:
    with database.session() as s:
        return int(
            s.scalar(
                sa.select(sa.func.count())
                .select_from(TelemetryRecord)
                .join(Device, Device.id == TelemetryRecord.device_pk)
                .where(Device.device_id == name)
            )
            or 0
        )


def detail(answer: httpx.Response) -> str:
    """The message of an AutoPi error body, which must be JSON and nothing else."""
    assert answer.headers["content-type"].startswith("application/json")
    body = answer.json()
    assert set(body) == {"detail"}, body
    return str(body["detail"])


# --- Paths and credentials -------------------------------------------------------------------


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("scheme", ["token", "Bearer", "TOKEN", "bearer"])
def test_a_batch_is_stored_at_every_path_with_either_header_form(
    client: httpx.Client, database: Database, car: dict[str, str], path: str, scheme: str
) -> None:
    before = stored_count(database, "car")
    answer = push(client, records(4), token(car, scheme), path)
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"stored": 4, "repeats": 0, "rejected": 0}
    assert "grpc-status" not in answer.headers
    assert stored_count(database, "car") == before + 4


@pytest.mark.parametrize(
    "content_type",
    [None, "text/plain", "application/octet-stream", "application/json; charset=utf-8"],
)
def test_any_content_type_or_none_is_taken_as_json(
    client: httpx.Client, car: dict[str, str], content_type: str | None
) -> None:
    request = client.build_request(
        "POST", "/logbook/storage", content=json.dumps(records(2)).encode(), headers=token(car)
    )
    request.headers.pop("content-type", None)
    if content_type is not None:
        request.headers["content-type"] = content_type
    answer = client.send(request)
    assert (answer.status_code, answer.json()["stored"]) == (200, 2), answer.text


def test_a_chunked_gzip_body_is_stored(client: httpx.Client, car: dict[str, str]) -> None:
    data = gzip.compress(json.dumps(records(3)).encode())

    def chunks() -> Iterator[bytes]:
        yield data[:7]
        yield data[7:]

    headers = {**token(car), "content-encoding": "gzip"}
    answer = client.post("/logbook/storage", content=chunks(), headers=headers)
    assert answer.request.headers["transfer-encoding"] == "chunked"
    assert (answer.status_code, answer.json()["stored"]) == (200, 3), answer.text


def test_the_firmware_unit_id_header_must_name_the_device(
    client: httpx.Client, car: dict[str, str], van: dict[str, str]
) -> None:
    same = push(client, records(), {**token(car), "unit-id": car["unit_id"]})
    assert same.status_code == 200, same.text
    upper = push(client, records(), {**token(car), "unit-id": car["unit_id"].upper()})
    assert upper.status_code == 200, upper.text
    for unit_id in (van["unit_id"], "not-a-uuid", ""):
        answer = push(client, records(), {**token(car), "unit-id": unit_id})
        assert answer.status_code == 401, (unit_id, answer.text)
        assert "unit-id" in detail(answer)


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"authorization": "token"},
        {"authorization": "token not-a-push-token"},
        {"authorization": "Bearer not-a-push-token"},
        {"authorization": "Basic dXNlcjpwYXNz"},
    ],
    ids=["none", "no-credential", "wrong-token", "wrong-bearer", "basic"],
)
def test_without_a_valid_push_token_the_answer_is_401_json(
    client: httpx.Client, database: Database, car: dict[str, str], headers: dict[str, str]
) -> None:
    before = stored_count(database, "car")
    answer = push(client, records(), headers)
    assert answer.status_code == 401
    assert detail(answer)
    assert stored_count(database, "car") == before


def test_a_push_token_stores_for_its_own_device_only(
    client: httpx.Client, database: Database, car: dict[str, str], truck: dict[str, str]
) -> None:
    cars, trucks = stored_count(database, "car"), stored_count(database, "truck")
    assert push(client, records(2), token(truck)).status_code == 200
    assert (stored_count(database, "car"), stored_count(database, "truck")) == (cars, trucks + 2)
    # Another device's unit id with this token is refused, whoever owns it.
    answer = push(client, records(2), {**token(truck), "unit-id": car["unit_id"]})
    assert answer.status_code == 401


def test_a_new_push_token_replaces_the_old_one(
    stack: Stack, client: httpx.Client, database: Database, ada: dict, bob: dict
) -> None:
    courier = device(stack, "ada", "courier")
    issued = stack.cli_json("device", "push-token", "--user", "ada", "--device", "courier")
    assert issued["device"] == "courier"
    assert issued["unit_id"] == courier["unit_id"]
    assert issued["push_token"] != courier["push_token"]
    assert push(client, records(2), token(issued)).status_code == 200
    assert stored_count(database, "courier") == 2
    # The old token was never used, so no cache holds it: it is refused at once (one in
    # use may be honoured for the few seconds of the server's push-token cache).
    assert push(client, records(2), token(courier)).status_code == 401
    refused = stack.cli("device", "push-token", "--user", "bob", "--device", "courier", check=False)
    assert refused.returncode != 0
    assert "courier" in refused.stderr


def test_a_user_token_is_not_a_push_token(
    stack: Stack, client: httpx.Client, car: dict[str, str]
) -> None:
    user_token = stack.thinger_token("ada")
    answer = push(client, records(), {"authorization": f"Bearer {user_token}"})
    assert answer.status_code == 401
    assert detail(answer) == "invalid push token"
    api_token = stack.cli_json("apitoken", "create", "--user", "ada", "--name", "push")["token"]
    for header in (f"APIToken {api_token}", f"token {api_token}", f"Bearer {api_token}"):
        answer = push(client, records(), {"authorization": header})
        assert answer.status_code == 401, (header, answer.text)


def test_a_push_token_is_not_a_user_token(
    stack: Stack, client: httpx.Client, car: dict[str, str]
) -> None:
    for scheme in ("Bearer", "token", "APIToken"):
        answer = client.get("/v1/users/ada/devices", headers=token(car, scheme))
        assert answer.status_code == 401, (scheme, answer.text)
    with grpc.insecure_channel(stack.grpc_target) as channel:
        stub = push_pb2_grpc.RejectedRecordServiceStub(channel)
        with pytest.raises(grpc.RpcError) as refused:
            stub.ListRejectedRecords(
                push_pb2.ListRejectedRecordsRequest(user_id="ada", device_id="car"),
                metadata=(("authorization", f"Bearer {car['push_token']}"),),
            )
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED


# --- Bodies ------------------------------------------------------------------------------------


def test_a_gzip_body_is_inflated(
    client: httpx.Client, database: Database, car: dict[str, str]
) -> None:
    before = stored_count(database, "car")
    body = gzip.compress(json.dumps(records(5)).encode())
    for encoding in ("gzip", "GZIP", "x-gzip"):
        answer = push(client, body, {**token(car), "content-encoding": encoding})
        assert answer.status_code == 200, answer.text
    assert stored_count(database, "car") == before + 5
    assert answer.json() == {"stored": 0, "repeats": 5, "rejected": 0}


def gzip_bomb(mebibytes: int) -> bytes:
    """A JSON array of ``mebibytes`` MiB of spaces, gzipped (about 1,000 times smaller),
    built a chunk at a time so that the test itself never holds it inflated."""
    deflater = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    chunk = b" " * (1024 * 1024)
    parts = [deflater.compress(b"[")]
    parts += [deflater.compress(chunk) for _ in range(mebibytes)]
    parts += [deflater.compress(b"]"), deflater.flush()]
    return b"".join(parts)


@pytest.mark.parametrize(
    "body",
    [b"not gzip at all", gzip.compress(b"[]")[:-6], gzip.compress(b"[]") + b"junk", b""],
    ids=["garbage", "truncated", "trailing-garbage", "empty"],
)
def test_a_body_that_says_gzip_but_is_not_is_400(
    client: httpx.Client, car: dict[str, str], body: bytes
) -> None:
    answer = push(client, body, {**token(car), "content-encoding": "gzip"})
    assert answer.status_code == 400
    assert "gzip" in detail(answer)


def test_a_gzip_bomb_is_413_and_the_server_carries_on(
    client: httpx.Client, car: dict[str, str]
) -> None:
    bomb = gzip_bomb(256)
    answer = push(client, bomb, {**token(car), "content-encoding": "gzip"})
    assert answer.status_code == 413
    assert str(MAX_BATCH) in detail(answer)
    assert push(client, records(), token(car)).status_code == 200


def test_an_unknown_content_encoding_is_400(client: httpx.Client, car: dict[str, str]) -> None:
    answer = push(client, records(), {**token(car), "content-encoding": "br"})
    assert answer.status_code == 400
    assert "content-encoding" in detail(answer)


@pytest.mark.parametrize(
    "body",
    [b"[{", b'{"@t": 1,}', b"[nan]", b"\xff\xfe", b""],
    ids=["cut", "comma", "lowercase-nan", "bytes", "empty"],
)
def test_a_body_that_is_not_json_is_400(
    client: httpx.Client, car: dict[str, str], body: bytes
) -> None:
    answer = push(client, body, token(car))
    assert answer.status_code == 400
    assert "not valid JSON" in detail(answer)


@pytest.mark.parametrize("body", [b"42", b'"records"', b"null", b"true"])
def test_json_that_is_not_records_is_400(
    client: httpx.Client, car: dict[str, str], body: bytes
) -> None:
    answer = push(client, body, token(car))
    assert answer.status_code == 400
    assert "JSON array" in detail(answer)


def test_one_record_object_alone_is_a_batch_of_one(
    client: httpx.Client, database: Database, car: dict[str, str]
) -> None:
    before = stored_count(database, "car")
    answer = push(client, records(1)[0], token(car))
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"stored": 1, "repeats": 0, "rejected": 0}
    assert stored_count(database, "car") == before + 1


def test_an_empty_batch_is_200(client: httpx.Client, car: dict[str, str]) -> None:
    answer = push(client, [], token(car))
    assert (answer.status_code, answer.json()) == (200, {"stored": 0, "repeats": 0, "rejected": 0})


def test_a_body_over_the_batch_limit_is_413(client: httpx.Client, car: dict[str, str]) -> None:
    answer = push(client, b"[" + b" " * MAX_BATCH + b"]", token(car))
    assert answer.status_code == 413
    assert detail(answer)


def test_a_body_over_the_gateway_limit_is_413(client: httpx.Client, car: dict[str, str]) -> None:
    answer = push(client, b"[" + b" " * GATEWAY_LIMIT + b"]", token(car))
    assert answer.status_code == 413
    assert answer.headers["content-type"].startswith("application/json")
    assert push(client, records(), token(car)).status_code == 200


# --- Exactly once, partial batches, rejects ---------------------------------------------------


def test_a_batch_sent_twice_is_stored_once(
    client: httpx.Client, database: Database, van: dict[str, str]
) -> None:
    batch = records(10)
    before = stored_count(database, "van")
    first = push(client, batch, token(van))
    again = push(
        client,
        gzip.compress(json.dumps(batch).encode()),
        {**token(van), "content-encoding": "gzip"},
    )
    assert first.json() == {"stored": 10, "repeats": 0, "rejected": 0}
    assert again.json() == {"stored": 0, "repeats": 10, "rejected": 0}
    assert stored_count(database, "van") == before + 10


BAD_RECORDS: list[Any] = [
    {"@t": "obd.bat", "voltage": 12.1},
    {"@ts": "2024-03-01T00:00:00Z", "voltage": 12.1},
    {"@t": "obd.bat", "@ts": "yesterday"},
    42,
]


def test_a_partly_bad_batch_is_2xx_and_its_rejects_are_visible(
    stack: Stack, client: httpx.Client, database: Database, ada: dict, bob: dict
) -> None:
    dev = device(stack, "ada", "bus")
    good = records(3)
    batch = [good[0], *BAD_RECORDS[:2], good[1], *BAD_RECORDS[2:], good[2]]
    answer = push(client, batch, token(dev))
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"stored": 3, "repeats": 0, "rejected": 4}
    assert stored_count(database, "bus") == 3
    # Sent again: the good ones are repeats, the bad ones are set aside once.
    assert push(client, batch, token(dev)).json() == {"stored": 0, "repeats": 3, "rejected": 4}

    listed = stack.cli_json("telemetry", "rejects", "--user", "ada", "--device", "bus")
    assert listed["device"] == "bus"
    assert listed["count"] == 4
    shown = sorted((r["position"], r["reason"], r["source"]) for r in listed["rejects"])
    assert shown == [
        (1, "missing @ts", "http"),
        (2, "missing @t", "http"),
        (4, "bad @ts: must be an ISO-8601 date and time, such as 2024-01-01T12:00:00Z", "http"),
        (5, "not a JSON object", "http"),
    ]
    assert {json.dumps(r["record"], sort_keys=True) for r in listed["rejects"]} == {
        json.dumps(r, sort_keys=True) for r in BAD_RECORDS
    }
    assert all(r["received"].endswith("+00:00") for r in listed["rejects"])
    limited = stack.cli_json(
        "telemetry", "rejects", "--user", "ada", "--device", "bus", "--limit", "1"
    )
    assert (limited["count"], len(limited["rejects"])) == (4, 1)
    assert limited["rejects"][0]["position"] == 5  # newest first: the last one set aside

    login = stack.thinger_token("ada")
    with grpc.insecure_channel(stack.grpc_target) as channel:
        stub = push_pb2_grpc.RejectedRecordServiceStub(channel)
        meta = (("authorization", f"Bearer {login}"),)
        pages: list[push_pb2.ListRejectedRecordsResponse] = []
        page_token = ""
        while True:
            page = stub.ListRejectedRecords(
                push_pb2.ListRejectedRecordsRequest(
                    user_id="ada", device_id="bus", page_size=3, page_token=page_token
                ),
                metadata=meta,
            )
            pages.append(page)
            page_token = page.next_page_token
            if not page_token:
                break
        assert [len(p.rejected_records) for p in pages] == [3, 1]
        assert all(p.total_size == 4 for p in pages)
        positions = [r.position for p in pages for r in p.rejected_records]
        assert positions == [5, 4, 2, 1]
        assert pages[0].rejected_records[0].record == "42"
        assert pages[0].rejected_records[0].receive_time.seconds > 1_700_000_000

        for user, name in (("ada", "ghost"), ("ada", "truck")):
            with pytest.raises(grpc.RpcError) as missing:
                stub.ListRejectedRecords(
                    push_pb2.ListRejectedRecordsRequest(user_id=user, device_id=name),
                    metadata=meta,
                )
            assert missing.value.code() == grpc.StatusCode.NOT_FOUND
        bob_meta = (("authorization", f"Bearer {stack.thinger_token('bob')}"),)
        with pytest.raises(grpc.RpcError) as foreign:
            stub.ListRejectedRecords(
                push_pb2.ListRejectedRecordsRequest(user_id="bob", device_id="bus"),
                metadata=bob_meta,
            )
        assert foreign.value.code() == grpc.StatusCode.NOT_FOUND
        with pytest.raises(grpc.RpcError) as other_path:
            stub.ListRejectedRecords(
                push_pb2.ListRejectedRecordsRequest(user_id="ada", device_id="bus"),
                metadata=bob_meta,
            )
        assert other_path.value.code() == grpc.StatusCode.UNAUTHENTICATED
        for bad in (
            push_pb2.ListRejectedRecordsRequest(user_id="ada", device_id="bus", page_size=-1),
            push_pb2.ListRejectedRecordsRequest(user_id="ada", device_id="bus", page_token="x!"),
        ):
            with pytest.raises(grpc.RpcError) as invalid:
                stub.ListRejectedRecords(bad, metadata=meta)
            assert invalid.value.code() == grpc.StatusCode.INVALID_ARGUMENT


@pytest.mark.parametrize("value", [b"1e400", b'"\\udc00 a lone surrogate"', b"NaN"])
def test_a_value_orjson_refuses_costs_its_record_not_the_batch(
    stack: Stack, client: httpx.Client, database: Database, ada: dict, value: bytes
) -> None:
    # Valid JSON (RFC 8259) that no double or UTF-8 string holds: a 400 would make the
    # firmware send the same batch forever.
    name = f"odd_{len(value)}"
    dev = device(stack, "ada", name)
    good = [json.dumps(r).encode() for r in records(2)]
    odd = b'{"@t": "obd.bat", "@ts": "2024-03-01T00:00:00Z", "voltage": ' + value + b"}"
    body = b"[" + b",".join([good[0], odd, good[1]]) + b"]"
    for encoding in ("identity", "gzip"):
        sent = gzip.compress(body) if encoding == "gzip" else body
        answer = push(client, sent, {**token(dev), "content-encoding": encoding})
        assert answer.status_code == 200, answer.text
        stored = 2 if encoding == "identity" else 0
        assert answer.json() == {"stored": stored, "repeats": 2 - stored, "rejected": 1}
    assert stored_count(database, name) == 2
    listed = stack.cli_json("telemetry", "rejects", "--user", "ada", "--device", name)
    assert [(r["position"], r["reason"]) for r in listed["rejects"]] == [
        (1, "fields are not representable as JSON")
    ]


def test_a_record_nested_1000_deep_is_set_aside_and_the_batch_stored(
    stack: Stack, client: httpx.Client, database: Database, ada: dict
) -> None:
    # Deeper than orjson writes (255) and than repr goes (~1000), within what orjson reads.
    dev = device(stack, "ada", "deep")
    good = json.dumps(records(1)[0]).encode()
    deep = b"[" * 1020 + b"]" * 1020
    odd = b'{"@t": "obd.bat", "@ts": "2024-03-01T00:00:00Z", "voltage": ' + deep + b"}"
    answer = push(client, b"[" + good + b"," + odd + b"]", token(dev))
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"stored": 1, "repeats": 0, "rejected": 1}
    assert stored_count(database, "deep") == 1


def test_the_owner_lists_rejects_over_rest(
    stack: Stack, client: httpx.Client, ada: dict, bob: dict
) -> None:
    dev = device(stack, "ada", "tram")
    assert push(client, [*records(1), *BAD_RECORDS], token(dev)).json()["rejected"] == 4
    auth = {"Authorization": f"Bearer {stack.thinger_token('ada')}"}
    path = "/v2/users/ada/devices/tram/telemetry/rejects"
    first = client.get(path, params={"page_size": 3}, headers=auth)
    assert first.status_code == 200, first.text
    body = first.json()
    assert body["total_size"] == 4
    assert [r["position"] for r in body["rejected_records"]] == [4, 3, 2]
    assert set(body["rejected_records"][0]) == {
        "position", "reason", "record", "receive_time", "source"
    }  # fmt: skip
    assert body["rejected_records"][0]["record"] == "42"
    rest = client.get(
        path + "/", params={"page_size": 3, "page_token": body["next_page_token"]}, headers=auth
    )
    assert [r["position"] for r in rest.json()["rejected_records"]] == [1]
    assert rest.json()["next_page_token"] == ""
    # Another user's device is missing; another user's path, or no credential, is a 401.
    bob_auth = {"Authorization": f"Bearer {stack.thinger_token('bob')}"}
    missing = client.get("/v2/users/bob/devices/tram/telemetry/rejects", headers=bob_auth)
    assert missing.status_code == 404
    assert set(missing.json()) == {"error"}
    assert client.get(path, headers=bob_auth).status_code == 401
    assert client.get(path).status_code == 401
    assert client.get(path, headers=token(dev, "Bearer")).status_code == 401
    assert client.get(path, params={"page_size": -1}, headers=auth).status_code == 400


@pytest.mark.parametrize("last_id", [2**63, 9_999_999_999_999_999_999])
def test_a_page_token_beyond_64_bits_is_400(
    stack: Stack, client: httpx.Client, ada: dict, last_id: int
) -> None:
    device(stack, "ada", f"tok{last_id % 1000}")
    auth = {"Authorization": f"Bearer {stack.thinger_token('ada')}"}
    page_token = base64.urlsafe_b64encode(f"rejects:{last_id}".encode()).decode()
    answer = client.get(
        f"/v2/users/ada/devices/tok{last_id % 1000}/telemetry/rejects",
        params={"page_token": page_token},
        headers=auth,
    )
    assert answer.status_code == 400, answer.text
    assert "page_token" in answer.json()["error"]["message"]


def test_the_rejects_command_refuses_what_the_user_does_not_own(
    stack: Stack, truck: dict[str, str], ada: dict
) -> None:
    result = stack.cli("telemetry", "rejects", "--user", "ada", "--device", "truck", check=False)
    assert result.returncode != 0
    assert "not found" in result.stderr
