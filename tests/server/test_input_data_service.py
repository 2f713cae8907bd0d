"""InputDataService over gRPC on an in-process server: typed fields, the server's clock for
the latest endpoints, and the checks both faces share."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import grpc
import orjson
import pytest
from google.api import httpbody_pb2
from google.protobuf import duration_pb2, timestamp_pb2
from thingwire.inputs.v1 import input_data_pb2 as pb
from thingwire.inputs.v1 import input_data_pb2_grpc

from server.storage import orgs
from tests.server.conftest import ServerUnderTest

DAY = duration_pb2.Duration(seconds=86_400)


@pytest.fixture
def setup(
    grpc_server: ServerUnderTest,
) -> tuple[input_data_pb2_grpc.InputDataServiceStub, tuple, list[str], int]:
    with grpc_server.database.session() as s:
        org, key = orgs.create_org(s, "acme")
        ids = [orgs.create_input(s, org.id, f"in{n}").id for n in range(2)]
        asset = orgs.create_asset(s, org.id, "car", ids).id
        org_id = org.id
    metadata = (("organization-id", org_id), ("organization-api-key", key))
    return input_data_pb2_grpc.InputDataServiceStub(grpc_server.channel), metadata, ids, asset


def put(
    stub, headers, input_id: str, value: object, moment: datetime, **attributes: object
) -> dict:
    body = {
        "data": {
            "type": "SensorData",
            "attributes": {"value": value, "timestamp": moment.isoformat(), **attributes},
        }
    }
    answer = stub.CreateInputData(
        pb.CreateInputDataRequest(
            input_pk=input_id,
            body=httpbody_pb2.HttpBody(content_type="application/json", data=orjson.dumps(body)),
        ),
        metadata=headers,
    )
    assert answer.content_type == "application/vnd.api+json"
    return dict(orjson.loads(answer.data))


def test_latest_reads_the_servers_clock(grpc_server: ServerUnderTest, setup) -> None:
    stub, metadata, ids, _ = setup
    now = grpc_server.clock.now
    put(stub, metadata, ids[0], "old", now - timedelta(days=3))
    put(stub, metadata, ids[0], "new", now - timedelta(hours=1))
    request = pb.GetLatestInputDataByInputsRequest(input_ids=[ids[0]], lookback=DAY)
    answer = orjson.loads(stub.GetLatestInputDataByInputs(request, metadata=metadata).data)
    assert [v["value"] for v in answer[0]["inputdata"]] == ["new"]
    grpc_server.clock.advance(days=2)
    answer = orjson.loads(stub.GetLatestInputDataByInputs(request, metadata=metadata).data)
    assert answer[0]["inputdata"] == []


def test_typed_order_limit_and_statistics(grpc_server: ServerUnderTest, setup) -> None:
    stub, metadata, ids, asset = setup
    base = datetime(2020, 1, 1, tzinfo=UTC)
    for n, value in enumerate(["5", "1", "3", "1e305", "off"]):
        put(stub, metadata, ids[1], value, base + timedelta(minutes=n))
    answer = stub.GetInputDataByAsset(
        pb.GetInputDataByAssetRequest(
            asset_pk=asset, input_ids=[ids[1]], order=pb.INPUT_DATA_ORDER_VALUE, limit_per_input=3
        ),
        metadata=metadata,
    )
    document = orjson.loads(answer.data)
    assert document["id"] == asset
    values = document["inputs"][0]["inputdata"]
    assert [v["value"] for v in values] == ["1", "3", "5"]
    stats = stub.GetStatisticsInputDataByInputs(
        pb.GetStatisticsInputDataByInputsRequest(input_ids=[ids[1]]), metadata=metadata
    )
    # "1e305" is kept as text but is too large to count as a number; "off" is no number.
    assert orjson.loads(stats.data)[0]["inputdata"] == [{"min": 1, "max": 5, "avg": 3}]


def test_an_upload_sent_again_answers_the_stored_one(grpc_server: ServerUnderTest, setup) -> None:
    stub, metadata, ids, _ = setup
    moment = datetime(2020, 10, 13, 14, 2, 39, 489000, tzinfo=UTC)
    first = put(stub, metadata, ids[0], 12.5, moment, metadata={"a": 1})
    again = put(stub, metadata, ids[0], "99", moment)
    assert again == first
    assert first["data"]["attributes"] == {
        "timestamp": "2020-10-13T14:02:39.489000Z",
        "value": "12.5",
        "metadata": {"a": 1},
    }


def _stamp(seconds: int) -> timestamp_pb2.Timestamp:
    return timestamp_pb2.Timestamp(seconds=seconds)


@pytest.mark.parametrize(
    "request_",
    [
        pb.GetInputDataByInputsRequest(limit_per_input=-1),
        pb.GetInputDataByInputsRequest(limit_per_input=10_001),
        pb.GetInputDataByInputsRequest(start_time=_stamp(2**40)),
        pb.GetInputDataByInputsRequest(start_time=_stamp(10), end_time=_stamp(5)),
        pb.GetInputDataByInputsRequest(start_time=_stamp(10), lookback=DAY),
        pb.GetInputDataByInputsRequest(lookback=duration_pb2.Duration(seconds=-5)),
        pb.GetInputDataByInputsRequest(lookback=duration_pb2.Duration(seconds=2**40)),
        pb.GetLatestInputDataByInputsRequest(),
        pb.GetStatisticsInputDataByInputsRequest(aggregations=[pb.AGGREGATION_UNSPECIFIED]),
        pb.GetInputDataByAssetRequest(asset_pk=0),
    ],
)
def test_bad_typed_fields_are_invalid_argument(setup, request_) -> None:
    stub, metadata, ids, _ = setup
    if "input_ids" in request_.DESCRIPTOR.fields_by_name and not isinstance(
        request_, pb.GetInputDataByAssetRequest
    ):
        request_.input_ids.append(ids[0])
    method = getattr(stub, request_.DESCRIPTOR.name.removesuffix("Request"))
    with pytest.raises(grpc.RpcError) as info:
        method(request_, metadata=metadata)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, info.value.details()


def test_too_deep_metadata_is_refused(setup) -> None:
    stub, metadata, ids, _ = setup
    deep: object = 1
    for _ in range(40):
        deep = [deep]
    with pytest.raises(grpc.RpcError) as info:
        put(stub, metadata, ids[0], "1", datetime(2020, 1, 1, tzinfo=UTC), metadata=deep)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "nest" in (info.value.details() or "")
