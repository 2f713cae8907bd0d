"""TelemetryPushService on an in-process server: counts after commit, 503 when storing fails."""

from __future__ import annotations

import grpc
import orjson
import pytest
import sqlalchemy as sa
from google.api import httpbody_pb2
from thingwire.telemetry.v1 import push_pb2, push_pb2_grpc

from server.storage import devices, users
from server.storage.models import Device
from tests.server.conftest import ServerUnderTest

RECORDS = [
    {"@t": "obd.bat", "@ts": "2024-01-01T00:00:00Z", "voltage": 12.5},
    {"@t": "obd.bat", "@ts": "2024-01-01T00:00:01Z", "voltage": 12.6},
    {"@t": "obd.bat"},
]


def push(server: ServerUnderTest, token: str, body: object) -> push_pb2.PushRecordsResponse:
    stub = push_pb2_grpc.TelemetryPushServiceStub(server.channel)
    request = push_pb2.PushRecordsRequest(
        body=httpbody_pb2.HttpBody(content_type="application/json", data=orjson.dumps(body))
    )
    response: push_pb2.PushRecordsResponse = stub.PushRecords(
        request, metadata=(("authorization", f"token {token}"),)
    )
    return response


@pytest.fixture
def push_token(grpc_server: ServerUnderTest) -> str:
    with grpc_server.database.session() as s:
        user = users.create_user(s, "ada@example.com", "s3cret-Passw0rd", "ada")
        _device, token = devices.create_device(s, user.id, "car", "credentials")
    return token


def test_the_answer_counts_what_was_committed(
    grpc_server: ServerUnderTest, push_token: str
) -> None:
    first = push(grpc_server, push_token, RECORDS)
    assert (first.stored, first.repeats, first.rejected) == (2, 0, 1)
    again = push(grpc_server, push_token, RECORDS)
    assert (again.stored, again.repeats, again.rejected) == (0, 2, 1)


def test_a_batch_that_cannot_be_stored_is_unavailable(
    grpc_server: ServerUnderTest, push_token: str
) -> None:
    push(grpc_server, push_token, RECORDS)  # the token's device is now known (cached)
    with grpc_server.database.session() as s:
        s.execute(sa.delete(Device).where(Device.device_id == "car"))
    with pytest.raises(grpc.RpcError) as failed:
        push(grpc_server, push_token, [{"@t": "x", "@ts": "2024-01-02T00:00:00Z"}])
    assert failed.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "retry" in (failed.value.details() or "")
    trailing = dict(failed.value.trailing_metadata() or ())
    assert trailing["x-http-status"] == "503"
